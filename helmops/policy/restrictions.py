"""A HelmApp against Fleet's GitRepoRestrictions of its namespace (pure).

How Fleet (v0.12, ``gitops/reconciler/restrictions.go``) reads these objects, and how each field maps onto a
HelmApp here:

* Several restrictions in one namespace are **combined**: sorted by name, the first non-empty
  ``defaultServiceAccount`` wins, and the ``allowed*`` lists are concatenated (a value allowed by any one of
  them is allowed). An empty list means "no restriction on this field".
* ``defaultServiceAccount`` → ``spec.serviceAccount`` when the HelmApp sets none. As in Fleet, the default is
  the operator's choice and is not checked against ``allowedServiceAccounts`` (here it also counts as allowed
  when a HelmApp names it explicitly).
* ``allowedServiceAccounts`` → ``spec.serviceAccount`` and every ``targets[].serviceAccount`` the HelmApp
  sets itself (exact names).
* ``allowedTargetNamespaces`` → ``spec.namespace`` (Fleet's ``targetNamespace``: the namespace every object
  and the release go to): when the list is set, ``spec.namespace`` must be set and listed, and so must every
  ``targets[].namespace``.
* ``allowedRepoPatterns`` → where the chart comes from: ``spec.helm.repo`` (HTTP or ``oci://`` repository),
  else ``spec.helm.chart`` (a chart URL, a tarball URL or an ``oci://`` reference), and the same fields of each
  target. A pattern allows a value it equals verbatim, or that it matches as a regular expression anywhere in
  the value (Go's unanchored ``MatchString``; anchor with ``^...$`` to match a whole URL). Patterns are
  evaluated with Python's ``re``, whose syntax is a superset of RE2's for the usual constructs. A pattern that
  does not compile is a violation, as in Fleet.
* ``allowedClientSecretNames`` / ``defaultClientSecretName`` name git credentials and do not apply to
  HelmApps.

On top of that, the controller option ``require_service_account`` refuses a HelmApp left without a
serviceAccount after defaulting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from helmops.api.objects import HelmApp
from helmops.api.options import HelmOptions
from helmops.api.spec import HelmAppSpec

#: chart sources longer than this are refused outright (bounds the regular-expression work).
MAX_SOURCE_LENGTH = 2048


@dataclass(frozen=True)
class Policy:
    """The GitRepoRestrictions of one namespace, combined as Fleet combines them."""

    names: tuple[str, ...] = ()
    default_service_account: str = ""
    allowed_service_accounts: tuple[str, ...] = ()
    allowed_target_namespaces: tuple[str, ...] = ()
    allowed_repo_patterns: tuple[str, ...] = ()

    def describe(self) -> str:
        return "GitRepoRestriction " + ", ".join(self.names) if self.names else "policy"


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str) and v)


def aggregate(objects: Iterable[Mapping[str, Any]]) -> Policy | None:
    """Fleet's combination of a namespace's GitRepoRestrictions (None when there are none). The fields sit
    at the top level of the object, not under ``spec``."""
    items = sorted(objects, key=lambda o: str((o.get("metadata") or {}).get("name") or ""))
    if not items:
        return None
    default = ""
    sas: list[str] = []
    namespaces: list[str] = []
    patterns: list[str] = []
    for obj in items:
        if not default and isinstance(obj.get("defaultServiceAccount"), str):
            default = str(obj["defaultServiceAccount"])
        sas.extend(_strings(obj.get("allowedServiceAccounts")))
        namespaces.extend(_strings(obj.get("allowedTargetNamespaces")))
        patterns.extend(_strings(obj.get("allowedRepoPatterns")))
    names = tuple(str((o.get("metadata") or {}).get("name") or "") for o in items)
    return Policy(names, default, tuple(sas), tuple(namespaces), tuple(patterns))


@dataclass(frozen=True)
class Violation:
    #: the rule broken: ``requireServiceAccount``, ``allowedServiceAccounts``, ``allowedTargetNamespaces``,
    #: ``allowedRepoPatterns`` or ``policyUnreadable``.
    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class PolicyResult:
    #: the serviceAccount the HelmApp acts as after defaulting (None: the controller's own identity).
    service_account: str | None = None
    #: True when ``service_account`` came from a restriction's defaultServiceAccount.
    defaulted: bool = False
    violations: tuple[Violation, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.violations

    def message(self) -> str:
        return "; ".join(v.message for v in self.violations)

    def apply(self, helmapp: HelmApp) -> HelmApp:
        """The HelmApp as reconciled: with the defaulted serviceAccount written into its spec."""
        if not (self.defaulted and self.service_account):
            return helmapp
        spec = helmapp.spec.model_copy(update={"service_account": self.service_account})
        out = helmapp.model_copy(update={"spec": spec})
        out.unparsed = helmapp.unparsed
        return out


def source_urls(spec: HelmAppSpec) -> list[str]:
    """Where the chart comes from, for the spec and each target that overrides it."""
    out: list[str] = []

    def add(helm: HelmOptions) -> None:
        value = helm.repo or helm.chart or ""
        if value and value not in out:
            out.append(value)

    add(spec.helm)
    for target in spec.targets:
        add(target.helm)
    return out


def _pattern_allows(pattern: str, value: str) -> tuple[bool, str | None]:
    """(allowed, compile error)."""
    if pattern == value:
        return True, None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return False, str(exc)
    return compiled.search(value) is not None, None


def evaluate(
    helmapp: HelmApp,
    policy: Policy | None,
    *,
    require_service_account: bool = False,
) -> PolicyResult:
    """Every rule ``helmapp`` breaks, and the serviceAccount it acts as. Nothing may run on a HelmApp
    whose result is not ``ok``."""
    spec = helmapp.spec
    own = spec.service_account or ""
    violations: list[Violation] = []
    sa, defaulted = own, False
    if not sa and policy is not None and policy.default_service_account:
        sa, defaulted = policy.default_service_account, True
    if require_service_account and not sa:
        violations.append(
            Violation(
                "requireServiceAccount",
                "the controller requires a serviceAccount on every HelmApp (--require-service-account): "
                "set spec.serviceAccount, or a defaultServiceAccount in a GitRepoRestriction of this namespace",
            )
        )
    if policy is None:
        return PolicyResult(sa or None, defaulted, tuple(violations))
    what = policy.describe()

    if policy.allowed_service_accounts:
        # the operator's default is allowed wherever it appears (also once written into the spec)
        allowed = (*policy.allowed_service_accounts, policy.default_service_account)
        wanted = [own] if own else []
        wanted += [t.service_account for t in spec.targets if t.service_account]
        for name in dict.fromkeys(wanted):
            if name not in allowed:
                violations.append(
                    Violation(
                        "allowedServiceAccounts",
                        f"{what}: serviceAccount {name!r} is not in allowedServiceAccounts "
                        f"{list(policy.allowed_service_accounts)}",
                    )
                )

    if policy.allowed_target_namespaces:
        allowed = policy.allowed_target_namespaces
        base = spec.namespace or ""
        if not base:
            violations.append(
                Violation(
                    "allowedTargetNamespaces",
                    f"{what}: spec.namespace must be set because allowedTargetNamespaces {list(allowed)} is set",
                )
            )
        wanted = [base] if base else []
        wanted += [t.namespace for t in spec.targets if t.namespace]
        for ns in dict.fromkeys(wanted):
            if ns not in allowed:
                violations.append(
                    Violation(
                        "allowedTargetNamespaces",
                        f"{what}: namespace {ns!r} is not in allowedTargetNamespaces {list(allowed)}",
                    )
                )

    if policy.allowed_repo_patterns:
        violations.extend(_check_sources(spec, policy.allowed_repo_patterns, what))
    return PolicyResult(sa or None, defaulted, tuple(violations))


def _check_sources(spec: HelmAppSpec, patterns: Sequence[str], what: str) -> list[Violation]:
    out: list[Violation] = []
    for url in source_urls(spec):
        if len(url) > MAX_SOURCE_LENGTH:
            out.append(Violation("allowedRepoPatterns", f"{what}: chart source longer than {MAX_SOURCE_LENGTH}"))
            continue
        errors: list[str] = []
        allowed = False
        for pattern in patterns:
            ok, error = _pattern_allows(pattern, url)
            if error is not None:
                errors.append(f"pattern {pattern!r} does not compile: {error}")
            if ok:
                allowed = True
                break
        if not allowed:
            detail = f" ({'; '.join(errors)})" if errors else ""
            out.append(
                Violation(
                    "allowedRepoPatterns",
                    f"{what}: chart source {url!r} matches none of allowedRepoPatterns {list(patterns)}{detail}",
                )
            )
    return out


__all__ = ["MAX_SOURCE_LENGTH", "Policy", "PolicyResult", "Violation", "aggregate", "evaluate", "source_urls"]
