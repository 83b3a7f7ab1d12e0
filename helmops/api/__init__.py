"""The HelmApp API: Fleet-compatible pydantic models, CRD generation and semantic validation.

Import from here: ``from helmops.api import HelmApp, validate, release_name, chart_ref``.
"""

from helmops.api.annotations import (
    POLLING_INTERVAL,
    annotation_problems,
    polling_interval,
    polling_interval_seconds,
    validate_app,
)
from helmops.api.chart_source import ChartRef, chart_ref, effective_chart_source
from helmops.api.duration import is_polling_interval, parse_duration, parse_duration_ns
from helmops.api.naming import derive_release_name, release_name, release_namespace, target_name
from helmops.api.objects import Cluster, ClusterGroup, HelmApp, ObjectMeta
from helmops.api.options import BundleDeploymentOptions, BundleTarget, HelmOptions, ValuesFrom
from helmops.api.problems import Problem, problems_from_validation_error
from helmops.api.selector import LabelSelector, LabelSelectorRequirement
from helmops.api.spec import HelmAppSpec
from helmops.api.status import Condition, HelmAppStatus
from helmops.api.validate import IGNORED_FIELDS, validate

__all__ = [
    "IGNORED_FIELDS",
    "POLLING_INTERVAL",
    "BundleDeploymentOptions",
    "BundleTarget",
    "ChartRef",
    "Cluster",
    "ClusterGroup",
    "Condition",
    "HelmApp",
    "HelmAppSpec",
    "HelmAppStatus",
    "HelmOptions",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ObjectMeta",
    "Problem",
    "ValuesFrom",
    "annotation_problems",
    "chart_ref",
    "derive_release_name",
    "effective_chart_source",
    "is_polling_interval",
    "parse_duration",
    "parse_duration_ns",
    "polling_interval",
    "polling_interval_seconds",
    "problems_from_validation_error",
    "release_name",
    "release_namespace",
    "target_name",
    "validate",
    "validate_app",
]
