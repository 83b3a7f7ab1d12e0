"""Semantic checks of a HelmApp spec, and the pure rules derived from it.

The CRD (admission) accepts everything Fleet's CRD accepts; what is wrong or pointless beyond that
is found here and reported as :class:`Problem` s, which the controller turns into a condition and
Events. ``error`` problems stop the HelmApp from being deployed; ``warning`` ones do not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from helmops.api.duration import is_polling_interval, parse_duration, parse_duration_ns
from helmops.api.models import (
    RELEASE_NAME_MAX_LENGTH,
    RELEASE_NAME_PATTERN,
    BundleDeploymentOptions,
    BundleTarget,
    HelmAppSpec,
    HelmOptions,
)
from helmops.api.selector import LabelSelector
from helmops.kubeio.bounded import TRUNCATED

__all__ = [
    "ANNOTATIONS_MAX_BYTES",
    "ANNOTATIONS_RESERVED_BYTES",
    "IGNORED_FIELDS",
    "MAX_NESTING",
    "ChartRef",
    "Problem",
    "chart_ref",
    "cluster_problems",
    "derive_release_name",
    "effective_chart_source",
    "errors",
    "helmapp_problems",
    "is_polling_interval",
    "nesting_problem",
    "parse_duration",
    "parse_duration_ns",
    "problems_from_validation_error",
    "release_name",
    "release_namespace",
    "target_name",
    "validate",
    "warnings",
]

Severity = Literal["error", "warning"]
ChartKind = Literal["http", "oci", "tarball"]


@dataclass(frozen=True)
class Problem:
    """Something wrong with a HelmApp, located by the path of the offending field."""

    path: str
    """Field path from the object root, e.g. ``spec.helm.chart`` or ``spec.targets[1].clusterSelector``."""
    message: str
    """What is wrong, worded for the user."""
    severity: Severity = "error"
    """``error`` blocks deployment; ``warning`` is reported and the HelmApp is still deployed."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ChartRef:
    """Where a chart comes from, in one normal form whatever way the spec wrote it.

    ``ref`` is what to hand ``helm pull``/``helm install`` as the chart argument: the chart name
    (with ``--repo repo``) for ``http``, the ``oci://host/path/name`` reference for ``oci``, the URL
    for ``tarball``.
    """

    kind: ChartKind
    repo: str
    """http: repository base URL as written. oci: the reference without its last segment
    (``oci://host/path``). tarball: empty."""
    chart: str
    """http: chart name. oci: the last path segment (the chart name). tarball: the URL."""
    version: str
    """Version or constraint as written (stripped); empty for tarballs and for "latest"."""
    ref: str


#: Fields Fleet accepts that mean nothing to helmops (yet). Setting one yields a warning.
#: Keys are spec paths relative to ``spec`` (or to a target), values say why.
IGNORED_FIELDS: dict[str, str] = {
    "kustomize": "kustomize options apply to GitRepo bundles only",
    "yaml": "yaml overlays apply to GitRepo bundles only",
    "helm.valuesFiles": "valuesFiles are read from git by GitRepos; a HelmApp cannot use them",
    "resources": "bundle resources are internal to Fleet and unused by a HelmApp",
    "contentsId": "contentsId is internal to Fleet and unused by a HelmApp",
    "targetRestrictions": "targetRestrictions are internal to Fleet and not enforced by helmops",
    "helmAppOptions": "helmAppOptions are internal to Fleet (use helmSecretName/insecureSkipTLSVerify)",
    "rolloutStrategy.partitions": "rollout partitions are not supported by helmops",
    "rolloutStrategy.maxUnavailablePartitions": "rollout partitions are not supported by helmops",
    "rolloutStrategy.autoPartitionSize": "rollout partitions are not supported by helmops",
    "dependsOn": "dependsOn is not supported by helmops yet",
}
#: Of :data:`IGNORED_FIELDS`, those that can also appear inside a target.
_TARGET_IGNORED = ("kustomize", "yaml", "helm.valuesFiles")

_RELEASE_NAME_RE = re.compile(RELEASE_NAME_PATTERN)
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_NAME_CHARS_RE = re.compile(r"[^a-zA-Z0-9-]+")
_DASHES_RE = re.compile(r"-+")


# --------------------------------------------------------------------------------------------------
# limits on the raw object, checked before anything recursive (pydantic, merging, templating, YAML) runs

MAX_NESTING = 64
"""Levels of maps and lists allowed in a HelmApp's ``spec`` (values included) and in the Cluster fields
helmops reads, counted from that field. The API server accepts 10000; helm values never need many."""

ANNOTATIONS_MAX_BYTES = 256 * 1024
"""The API server's limit on the total size of an object's annotations (keys plus values)."""

ANNOTATIONS_RESERVED_BYTES = 16 * 1024
"""Room the controller keeps for its own annotations (deployed clusters, last poll): a HelmApp whose other
annotations leave less cannot be tracked, because those writes would be refused with 422."""


def nesting_problem(value: Any, path: str, limit: int = MAX_NESTING) -> Problem | None:
    """A problem if ``value`` holds more than ``limit`` levels of maps/lists (``value`` itself is level 1)
    or a subtree the bounded JSON loader cut (helmops.kubeio.bounded). Iterative: safe at any depth. The
    problem names the path down to the third level, where the excess lies."""
    stack: list[tuple[Any, int, str]] = [(value, 1, path)]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, str):
            if node == TRUNCATED:
                return Problem(where, f"nested deeper than {limit} levels of maps and lists")
            continue
        if not isinstance(node, Mapping | list):
            continue
        if depth > limit:
            return Problem(where, f"nested deeper than {limit} levels of maps and lists")
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        for key, child in items:
            if isinstance(child, Mapping | list | str):
                named = depth < 3 + path.count(".")
                child_path = (f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}") if named else where
                stack.append((child, depth + 1, child_path))
    return None


def _annotation_problem(meta: Mapping[str, Any]) -> Problem | None:
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return None
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES - ANNOTATIONS_RESERVED_BYTES:
        return Problem(
            "metadata.annotations",
            f"{size} bytes in total leave no room for the controller's own annotations (the API server allows "
            f"{ANNOTATIONS_MAX_BYTES}; helmops needs {ANNOTATIONS_RESERVED_BYTES}): remove some annotations",
        )
    return None


def helmapp_problems(helmapp: Mapping[str, Any]) -> list[Problem]:
    """Limits on a raw HelmApp object, to check before parsing its spec: nesting depth of ``spec`` and the
    annotation room the controller needs. Errors only."""
    found = [
        nesting_problem(helmapp.get("spec"), "spec"),
        _annotation_problem(helmapp.get("metadata") or {}),
    ]
    return [p for p in found if p is not None]


def cluster_problems(cluster: Mapping[str, Any]) -> list[Problem]:
    """Limits on a raw Fleet Cluster object, on the fields helmops reads (its spec, with templateValues, and
    its labels and annotations), before any of them is used for targeting or templating."""
    meta = cluster.get("metadata") or {}
    found = [
        nesting_problem(cluster.get("spec"), "spec"),
        nesting_problem(meta.get("labels"), "metadata.labels"),
        nesting_problem(meta.get("annotations"), "metadata.annotations"),
    ]
    return [p for p in found if p is not None]


# --------------------------------------------------------------------------------------------------
# release name and namespace


def _short_hash(text: str, length: int) -> str:
    # md5 only as a stable, short fingerprint; it is what Fleet uses, so names come out the same.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:length]


def _limit(text: str, count: int) -> str:
    """Cut ``text`` to ``count`` characters, ending in ``-`` + 5 hex digits of its hash when cut."""
    if len(text) <= count:
        return text
    if count <= 6:
        return text[:count]
    keep = count - 6
    separator = "" if text[keep - 1] == "-" else "-"
    return f"{text[:keep]}{separator}{_short_hash(text, 5)}"


def derive_release_name(name: str) -> str:
    """A valid Helm release name (≤ 53 chars) derived from ``name`` the way Fleet derives it.

    A name that is already lower-case and made of ``[a-z0-9-]`` keeps its characters; otherwise 8
    hex digits of a hash of the original are appended before it is lower-cased and every run of
    other characters becomes one ``-``. A result longer than 53 characters is cut and suffixed with
    ``-`` + 5 hex digits of its hash. Names that cannot be cleaned up become a 24-digit hash.
    """
    original = name
    text = name.replace("/", "-")
    if text != text.lower() or _NOT_NAME_CHARS_RE.search(text):
        text = f"{text}-{_short_hash(text, 8)}"
    text = _NOT_NAME_CHARS_RE.sub("-", text.lower())
    text = _DASHES_RE.sub("-", text).strip("-")
    if _RELEASE_NAME_RE.match(text) and _DNS_LABEL_RE.match(text):
        return _limit(text, RELEASE_NAME_MAX_LENGTH)
    return _short_hash(original, 24)


def release_name(helmapp_name: str, spec: HelmAppSpec, target: BundleTarget | None = None) -> str:
    """The Helm release name: ``helm.releaseName`` (a target's overrides the spec's), else derived
    from the HelmApp name (see :func:`derive_release_name`)."""
    for options in (target, spec):
        if options is not None and options.helm.release_name:
            return options.helm.release_name
    return derive_release_name(helmapp_name)


def release_namespace(spec: BundleDeploymentOptions, target: BundleTarget | None = None) -> str:
    """Namespace of the Helm release: ``namespace``, else ``defaultNamespace``, else ``default``.

    With a target, its non-empty ``namespace``/``defaultNamespace`` override the spec's first.
    """
    namespace = (target.namespace if target else None) or spec.namespace
    default_namespace = (target.default_namespace if target else None) or spec.default_namespace
    return namespace or default_namespace or "default"


def target_name(target: BundleTarget, index: int) -> str:
    """The target's name, or Fleet's positional default ``target000``, ``target001``, ..."""
    return target.name or f"target{index:03d}"


# --------------------------------------------------------------------------------------------------
# chart references


def _is_oci(text: str) -> bool:
    return text[:6].lower() == "oci://"


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _is_tarball(chart: str) -> bool:
    return chart.lower().endswith(".tgz")


def _oci_split(reference: str) -> tuple[str, str]:
    body = reference[6:].rstrip("/")
    host, _, path = body.partition("/")
    if not host or not path or "" in path.split("/"):
        raise ValueError(
            f"OCI reference {reference!r} must look like oci://host/path/chart (a registry host and "
            "at least the chart name)"
        )
    parent, _, name = body.rpartition("/")
    return f"oci://{parent}", name


def chart_ref(helm: HelmOptions) -> ChartRef:
    """Classify the chart reference of ``helm`` into http, oci or tarball, normalised.

    ``oci://`` may be in ``chart`` (as Fleet v0.12 wrote it, ``repo`` empty) or in ``repo`` (as later
    Fleet writes it, ``chart`` empty); both give the same :class:`ChartRef`. Raises ValueError with
    a user-worded reason when the combination is not usable (see :func:`validate` for the rules).
    """
    chart = (helm.chart or "").strip()
    repo = (helm.repo or "").strip()
    version = (helm.version or "").strip()

    if _is_oci(chart) and _is_oci(repo):
        raise ValueError("an oci:// reference is given in both chart and repo; give it in one of them")
    if _is_oci(repo):
        if chart:
            raise ValueError(
                "with an oci:// repo, chart must be empty: put the whole reference, chart name "
                "included, in repo (e.g. oci://host/path/chart)"
            )
        parent, name = _oci_split(repo)
        return ChartRef("oci", parent, name, version, f"{parent}/{name}")
    if _is_oci(chart):
        if repo:
            raise ValueError("with an oci:// chart reference, repo must be empty")
        parent, name = _oci_split(chart)
        return ChartRef("oci", parent, name, version, f"{parent}/{name}")
    if not chart:
        raise ValueError("no chart given: set chart (and repo), or an oci:// reference in repo")
    if not repo:
        if _is_http_url(chart):
            if version:
                raise ValueError("a chart given as a URL (tarball) is exactly one version: leave version empty")
            return ChartRef("tarball", "", chart, "", chart)
        if _is_tarball(chart):
            raise ValueError(f"chart {chart!r} looks like a tarball but is not an http(s) URL")
        raise ValueError(f"chart {chart!r} needs repo, the URL of the chart repository it is in")
    if _is_tarball(chart):
        raise ValueError("a tarball chart (.tgz) is a full URL on its own: leave repo and version empty")
    if not _is_http_url(repo):
        raise ValueError(f"repo {repo!r} must be an http(s):// chart repository URL or an oci:// reference")
    if "://" in chart or "/" in chart:
        raise ValueError(f"chart {chart!r} must be a chart name in the repository, not a path or URL")
    return ChartRef("http", repo, chart, version, chart)


def effective_chart_source(spec: HelmAppSpec, target: BundleTarget | None) -> HelmOptions:
    """The repo/chart/version a target deploys: its own non-empty ones, else the spec's (as Fleet
    merges them). Only these three fields are filled in the result."""
    root = spec.helm
    own = target.helm if target is not None else HelmOptions()
    return HelmOptions(
        repo=own.repo or root.repo,
        chart=own.chart or root.chart,
        version=own.version or root.version,
    )


# --------------------------------------------------------------------------------------------------
# validation


def _set(value: object) -> bool:
    """Whether an ignored field carries something (empty strings, lists and objects do not count)."""
    if value is None or value is False or value == "" or value == 0:
        return False
    if isinstance(value, dict | list):
        return bool(value)
    if hasattr(value, "model_dump"):
        dumped = value.model_dump(exclude_defaults=True)
        return any(_set(v) for v in dumped.values())
    return True


def _lookup(options: object, dotted: str) -> object:
    value: object = options
    for part in dotted.split("."):
        if value is None:
            return None
        attr = re.sub(r"(?<!^)([A-Z])", r"_\1", part).lower()
        value = getattr(value, attr, None)
    return value


def _selector_problems(selector: LabelSelector | None, path: str) -> Iterable[Problem]:
    if selector is None:
        return
    for where, why in selector.problems():
        yield Problem(f"{path}.{where}", why)


def _check_chart(helm: HelmOptions, path: str) -> Iterable[Problem]:
    try:
        chart_ref(helm)
    except ValueError as exc:
        field = "repo" if _is_oci((helm.repo or "").strip()) else "chart"
        yield Problem(f"{path}.{field}", str(exc))


def _check_namespaces(options: BundleDeploymentOptions, path: str) -> Iterable[Problem]:
    """``namespace`` and ``defaultNamespace`` name the release namespace (created when missing): the API
    server takes only a DNS-1123 label, so anything else can never deploy."""
    for field, value in (("namespace", options.namespace), ("defaultNamespace", options.default_namespace)):
        if value and (len(value) > 63 or not _DNS_LABEL_RE.match(value)):
            yield Problem(
                f"{path}.{field}",
                f"{value[:80]!r} is not a valid namespace name (lower-case letters, digits and '-', starting "
                "and ending with a letter or digit, at most 63 characters)",
            )


def _check_target(spec: HelmAppSpec, target: BundleTarget, index: int) -> Iterable[Problem]:
    path = f"spec.targets[{index}]"
    yield from _check_namespaces(target, path)
    has_selector = any(
        value is not None and value != ""
        for value in (
            target.cluster_name,
            target.cluster_selector,
            target.cluster_group,
            target.cluster_group_selector,
        )
    )
    if not has_selector and not target.do_not_deploy:
        yield Problem(
            path,
            f"target {target_name(target, index)!r} has no clusterName, clusterSelector, clusterGroup "
            "or clusterGroupSelector, so it matches no cluster",
            "warning",
        )
    yield from _selector_problems(target.cluster_selector, f"{path}.clusterSelector")
    yield from _selector_problems(target.cluster_group_selector, f"{path}.clusterGroupSelector")
    own = target.helm
    if own.chart or own.repo or own.version:
        # A target that names its own chart source must make sense together with the spec's.
        yield from _check_chart(effective_chart_source(spec, target), f"{path}.helm")
    yield from _check_helm_options(own, f"{path}.helm")
    for field in _TARGET_IGNORED:
        if _set(_lookup(target, field)):
            yield Problem(f"{path}.{field}", f"ignored: {IGNORED_FIELDS[field]}", "warning")


def _check_helm_options(helm: HelmOptions, path: str) -> Iterable[Problem]:
    if helm.wait_for_jobs and helm.timeout_seconds <= 0:
        yield Problem(
            f"{path}.waitForJobs",
            "waitForJobs has no effect without a positive timeoutSeconds",
            "warning",
        )
    if helm.max_history < 0:
        yield Problem(f"{path}.maxHistory", "maxHistory must not be negative")
    for index, source in enumerate(helm.values_from or []):
        entry = f"{path}.valuesFrom[{index}]"
        refs = [
            (name, ref)
            for name, ref in (
                ("configMapKeyRef", source.config_map_key_ref),
                ("secretKeyRef", source.secret_key_ref),
            )
            if ref is not None
        ]
        if not refs:
            yield Problem(entry, "names neither a configMapKeyRef nor a secretKeyRef", "warning")
        for name, ref in refs:
            if not ref.name:
                yield Problem(f"{entry}.{name}.name", "the name of the object to read values from is empty")


def validate(spec: HelmAppSpec) -> list[Problem]:
    """Everything wrong or ineffective in ``spec``, errors first, in field order within each severity.

    Checks: the chart reference (one of HTTP repo + chart name, an ``oci://`` reference in chart or
    repo, a full ``.tgz``/URL with empty repo and version) for the spec and for targets that set
    their own; release namespaces (``namespace``, ``defaultNamespace``, also per target) that are no valid
    namespace name; label selectors that cannot be evaluated; targets that can match nothing;
    ``pollingInterval``; and fields Fleet accepts that helmops ignores (warnings).
    """
    found: list[Problem] = list(_check_namespaces(spec, "spec"))
    if "helm" not in spec.model_fields_set:
        found.append(Problem("spec.helm", "helm options are missing: no chart to deploy"))
    else:
        found.extend(_check_chart(spec.helm, "spec.helm"))
    found.extend(_check_helm_options(spec.helm, "spec.helm"))

    if spec.polling_interval is not None and not is_polling_interval(spec.polling_interval):
        found.append(Problem("spec.pollingInterval", "must be '0' or a Go duration such as 5m, at most 2562047h"))

    for index, target in enumerate(spec.targets):
        found.extend(_check_target(spec, target, index))
    seen: dict[str, int] = {}
    for index, target in enumerate(spec.targets):
        if target.name:
            if target.name in seen:
                found.append(
                    Problem(
                        f"spec.targets[{index}].name",
                        f"target name {target.name!r} is also used by targets[{seen[target.name]}]",
                        "warning",
                    )
                )
            seen.setdefault(target.name, index)

    for index, restriction in enumerate(spec.target_restrictions):
        found.extend(
            _selector_problems(restriction.cluster_selector, f"spec.targetRestrictions[{index}].clusterSelector")
        )

    for field, why in IGNORED_FIELDS.items():
        if _set(_lookup(spec, field)):
            found.append(Problem(f"spec.{field}", f"ignored: {why}", "warning"))

    return errors(found) + warnings(found)


def errors(problems: Sequence[Problem]) -> list[Problem]:
    """The problems of severity ``error``."""
    return [p for p in problems if p.severity == "error"]


def warnings(problems: Sequence[Problem]) -> list[Problem]:
    """The problems of severity ``warning``."""
    return [p for p in problems if p.severity == "warning"]


_UNION_TAGS = ("int", "str")


def problems_from_validation_error(exc: ValidationError, root: str = "") -> list[Problem]:
    """Turn a pydantic ValidationError (from ``HelmApp.model_validate``) into Problems whose paths
    use the manifest's camelCase field names, e.g. ``spec.targets[0].helm.timeoutSeconds``.

    The two failed branches of an int-or-string field become one problem.
    """
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = list(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if len(loc) >= 2 and loc[-1] in _UNION_TAGS and isinstance(loc[-2], str):
            loc = loc[:-1]
            message = "Input should be an integer or a string such as 25%"
        path = root
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path = f"{path}.{part}" if path else str(part)
        found.setdefault(path or "(object)", message)
    return [Problem(path, message) for path, message in found.items()]
