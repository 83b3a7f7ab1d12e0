"""Values for one (HelmApp, cluster): Fleet's `${ }` templating, templateValues, per-target overrides and
valuesFrom, merged in Fleet's order into one canonical YAML document with a digest and its provenance.

Contract and decisions: docs/values.md. The Kubernetes-backed reader lives in `helmops.values.kube_reader`
(imported separately so the pure part has no client dependency at import time).
"""

from .assemble import (
    CLUSTER_LABEL_PREFIX,
    DEFAULT_VALUES_KEY,
    ValuesFromReader,
    assemble,
    render_inline,
    substitute_cluster_labels,
)
from .context import ClusterContext, filter_annotations, filter_labels
from .errors import TemplateError, ValuesError
from .merge import deep_merge, merge_deployment_options, merge_helm_options, merge_target_options
from .provenance import RenderedValues, ValueSource
from .template import render_template
from .template_functions import ALLOWED_FUNCTIONS, FORBIDDEN_FUNCTIONS

__all__ = [
    "ALLOWED_FUNCTIONS",
    "CLUSTER_LABEL_PREFIX",
    "DEFAULT_VALUES_KEY",
    "FORBIDDEN_FUNCTIONS",
    "ClusterContext",
    "RenderedValues",
    "TemplateError",
    "ValueSource",
    "ValuesError",
    "ValuesFromReader",
    "assemble",
    "deep_merge",
    "filter_annotations",
    "filter_labels",
    "merge_deployment_options",
    "merge_helm_options",
    "merge_target_options",
    "render_inline",
    "render_template",
    "substitute_cluster_labels",
]
