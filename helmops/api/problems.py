"""Problems: what is wrong with a HelmApp or Cluster, located by field path, and their severities.

Every check (:mod:`helmops.api.validate`, :mod:`helmops.api.annotations`) and the pydantic parse itself
report in this one shape, which the controller turns into a condition and Events and the CLI prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

__all__ = ["Problem", "Severity", "errors", "problems_from_validation_error", "warnings"]

Severity = Literal["error", "warning"]


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
