"""Per-target overrides merged over the root options, by Fleet's `options.Merge` rules.

Inputs are plain mappings with the manifest's camelCase keys (e.g. `HelmOptions.model_dump(by_alias=True)`),
so this module does not depend on the API models. Rules (fleet-helmops.md §1.3):

* strings (`chart`, `repo`, `version`, `releaseName`, ...) override only when the target's is non-empty;
* `timeoutSeconds` overrides when > 0 and resets to 0 when < 0;
* `values` deep-merged (maps merge key by key, anything else replaces; an explicit `null` replaces too, which
  Helm later reads as "delete this key");
* `templateValues` merged key by key; `valuesFrom` appended (`valuesFiles` is not merged, as in Fleet);
* `force`, `takeOwnership`, `atomic`, `disablePreProcess`, `waitForJobs`, `disableDNS` OR-ed;
* `maxHistory`, `skipSchemaValidation`, `disableDependencyUpdate` are not taken from targets.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

_STRING_FIELDS = ("chart", "repo", "version", "releaseName")
_OR_FIELDS = ("force", "takeOwnership", "atomic", "disablePreProcess", "waitForJobs", "disableDNS")
_APPENDED_FIELDS = ("valuesFrom",)

# BundleDeploymentOptions-level fields (outside `helm`) with the same rules.
_OPTION_STRING_FIELDS = ("defaultNamespace", "namespace", "serviceAccount")
_OPTION_OR_FIELDS = ("keepResources",)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`: nested maps merge, anything else (lists, scalars, null) replaces.

    Returns new containers; neither input is modified.
    """
    result: dict[str, Any] = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in override.items():
        current = result.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            result[key] = deep_merge(current, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def merge_helm_options(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fleet's merge of one `helm` options block over another."""
    result: dict[str, Any] = copy.deepcopy(dict(base or {}))
    if not override:
        return result
    for name in _STRING_FIELDS:
        if override.get(name):
            result[name] = override[name]
    timeout = override.get("timeoutSeconds")
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        if timeout > 0:
            result["timeoutSeconds"] = timeout
        elif timeout < 0:
            result["timeoutSeconds"] = 0
    if override.get("values") is not None:
        result["values"] = deep_merge(result.get("values") or {}, override["values"])
    if override.get("templateValues"):
        merged_tv = dict(result.get("templateValues") or {})
        merged_tv.update(override["templateValues"])
        result["templateValues"] = merged_tv
    for name in _APPENDED_FIELDS:
        if override.get(name):
            result[name] = [*(result.get(name) or []), *copy.deepcopy(list(override[name]))]
    for name in _OR_FIELDS:
        if override.get(name):
            result[name] = True
    return result


def merge_target_options(root_helm: Mapping[str, Any] | None, target: Mapping[str, Any]) -> dict[str, Any]:
    """The `helm` options a target's clusters get: the target's `helm` block merged over the root's.

    `target` is one `targets[]` entry (BundleTarget, with its own optional `helm`); the result is a new dict.
    """
    return merge_helm_options(root_helm, target.get("helm"))


def merge_deployment_options(root: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """Fleet's merge of the BundleDeploymentOptions fields a HelmApp spec and a target both carry:
    `defaultNamespace`/`namespace`/`serviceAccount` (non-empty wins), `keepResources` (OR-ed),
    `forceSyncGeneration` (> 0 wins), `correctDrift` (replaced when given), `diff.comparePatches` (appended)
    and `helm`. Other fields keep the root's value."""
    result: dict[str, Any] = copy.deepcopy(dict(root))
    for name in _OPTION_STRING_FIELDS:
        if target.get(name):
            result[name] = target[name]
    for name in _OPTION_OR_FIELDS:
        if target.get(name):
            result[name] = True
    generation = target.get("forceSyncGeneration")
    if isinstance(generation, int) and not isinstance(generation, bool) and generation > 0:
        result["forceSyncGeneration"] = generation
    if target.get("correctDrift") is not None:
        result["correctDrift"] = copy.deepcopy(target["correctDrift"])
    target_diff = target.get("diff")
    if isinstance(target_diff, Mapping):
        diff = dict(result.get("diff") or {})
        diff["comparePatches"] = [
            *(diff.get("comparePatches") or []),
            *copy.deepcopy(list(target_diff.get("comparePatches") or [])),
        ]
        result["diff"] = diff
    if target.get("helm") is not None or root.get("helm") is not None:
        result["helm"] = merge_target_options(root.get("helm"), target)
    return result
