"""The one place a HelmApp read from the API server (or a CLI file) becomes the typed :class:`HelmApp`.

Everything after the edge (targets, desired state, teardown decisions, policy) reads typed attributes; only
the manifest as read crosses back to the API server (Event references, finalizer patches, the live status).

Two parses:

* :func:`parse_helmapp` — strict: the model as the CRD defines it (raises ``pydantic.ValidationError``);
  the reconcile path runs it once, after the limits and semantic checks (``desired.adapters.ApiSpec``).
* :func:`lenient_helmapp` — never raises: a HelmApp that no longer validates must still be finalizable,
  so every spec field that parses on its own is kept, the rest is dropped and named in
  :attr:`HelmApp.unparsed`; the release name and namespace keep their raw strings so the release Fleet's
  rule points at is the one uninstalled.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from helmops.api.base import plain
from helmops.api.objects import HelmApp, ObjectMeta
from helmops.api.options import HelmOptions
from helmops.api.spec import HelmAppSpec

__all__ = ["fallback_release_name", "identify_helmapp", "lenient_helmapp", "parse_helmapp"]


def parse_helmapp(raw: Mapping[str, Any]) -> HelmApp:
    """``raw``'s metadata and spec as the typed model (raises ``pydantic.ValidationError`` for the spec;
    metadata the API server wrote is taken as far as it parses).

    The status is left out on purpose: it is the controller's (or Fleet's) own output, compared and patched
    in the stored shape (:mod:`helmops.status`), and a status field another writer added must not make a
    HelmApp unreadable."""
    spec = HelmAppSpec.model_validate(raw.get("spec") or {})  # errors keep their ``spec.``-relative paths
    return HelmApp.model_construct(metadata=_metadata(raw), spec=spec)


def _metadata(raw: Mapping[str, Any]) -> ObjectMeta:
    meta = plain(raw.get("metadata") or {})
    try:
        return ObjectMeta.model_validate(meta)
    except ValidationError:
        # only what identifies the object; the API server never stores these with other types
        keep = ("name", "namespace", "uid", "resourceVersion", "generation", "finalizers", "deletionTimestamp")
        return ObjectMeta.model_validate({k: meta[k] for k in keep if k in meta})


def _fields(model: type[HelmAppSpec] | type[HelmOptions], raw: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Each field of ``raw`` validated on its own: (the values that parse by field name, the aliases that
    do not)."""
    by_alias = {(f.alias or name): name for name, f in model.model_fields.items()}
    kept: dict[str, Any] = {}
    dropped: set[str] = set()
    for alias, value in raw.items():
        name = by_alias.get(alias)
        if name is None:
            continue  # unknown keys are ignored, as by the model
        try:
            kept[name] = getattr(model.model_validate({alias: value}), name)
        except ValidationError:
            dropped.add(alias)
    return kept, dropped


_INVALID = re.compile(r"[^a-z0-9.-]+")


def fallback_release_name(name: str) -> str:
    """The release name finalize derives for a spec the model rejects (lower-case, invalid characters →
    '-', a short hash when changed, at most 53 chars); a valid spec uses Fleet's rule
    (:func:`helmops.api.naming.derive_release_name`)."""
    clean = _INVALID.sub("-", name.lower()).strip("-.") or "release"
    if clean != name or len(clean) > 53:
        digest = hashlib.sha256(name.encode()).hexdigest()[:5]
        clean = f"{clean[: 53 - 6].rstrip('-.')}-{digest}"
    return clean


def identify_helmapp(raw: Mapping[str, Any]) -> HelmApp:
    """Only the metadata of ``raw`` (the spec left empty): enough to name a HelmApp whose spec is not
    accepted in Events and log lines, without parsing that spec."""
    return HelmApp.model_construct(metadata=_metadata(raw))


def _scalars(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if isinstance(v, str | int | float | bool) or v is None}


def lenient_helmapp(raw: Mapping[str, Any]) -> HelmApp:
    """The HelmApp as far as it parses (never raises): a valid one exactly as :func:`parse_helmapp`; for an
    invalid spec, the fields that parse alone, with ``helm.releaseName``, ``namespace`` and
    ``defaultNamespace`` kept as written (strings) so its release is found where it was installed."""
    from helmops.api.validate import helmapp_problems

    # beyond the limits (too deep), nothing recursive may touch the spec: only its scalar fields are read
    within_limits = not helmapp_problems(raw)
    if within_limits:
        try:
            return parse_helmapp(raw)
        except ValidationError:
            pass
    meta = _metadata(raw)
    given = raw.get("spec")
    spec_in: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    helm_given = spec_in.get("helm")
    helm_in: Mapping[str, Any] = helm_given if isinstance(helm_given, Mapping) else {}
    if within_limits:
        spec_raw, helm_raw = plain(spec_in), plain(helm_in)
    else:
        spec_raw, helm_raw = _scalars(spec_in), _scalars(helm_in)
    fields, dropped = _fields(HelmAppSpec, spec_raw)
    dropped.discard("helm")  # parsed field by field below
    dropped |= {str(k) for k in spec_in if k not in spec_raw and k != "helm"}
    helm_fields, helm_dropped = _fields(HelmOptions, helm_raw)
    helm_fields["release_name"] = str(helm_raw.get("releaseName") or fallback_release_name(meta.name))
    fields["helm"] = HelmOptions.model_construct(**helm_fields)
    for alias, name in (("namespace", "namespace"), ("defaultNamespace", "default_namespace")):
        if isinstance(spec_raw.get(alias), str):
            fields[name] = spec_raw[alias]
            dropped.discard(alias)
    app = HelmApp.model_construct(metadata=meta, spec=HelmAppSpec.model_construct(**fields))
    app.unparsed = frozenset(dropped | {f"helm.{a}" for a in helm_dropped})
    return app
