"""Chart references: the three ways a HelmApp names a chart (HTTP repository, ``oci://``, tarball URL),
classified into one normal form, and the chart source a target ends up deploying.

Kept apart from validation because the normal form is used on its own (``helmops plan`` takes the chart
name from it); validation only reports the reason :func:`chart_ref` gives for a reference it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from helmops.api.options import BundleTarget, HelmOptions
from helmops.api.spec import HelmAppSpec

__all__ = ["ChartKind", "ChartRef", "chart_ref", "effective_chart_source", "is_oci"]

ChartKind = Literal["http", "oci", "tarball"]


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


def is_oci(text: str) -> bool:
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

    if is_oci(chart) and is_oci(repo):
        raise ValueError("an oci:// reference is given in both chart and repo; give it in one of them")
    if is_oci(repo):
        if chart:
            raise ValueError(
                "with an oci:// repo, chart must be empty: put the whole reference, chart name "
                "included, in repo (e.g. oci://host/path/chart)"
            )
        parent, name = _oci_split(repo)
        return ChartRef("oci", parent, name, version, f"{parent}/{name}")
    if is_oci(chart):
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
