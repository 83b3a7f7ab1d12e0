"""Loads tests/templates/corpus.yaml and turns each placeholder template into its `${ }` and `{{ }}` forms."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).with_name("corpus.yaml")
OPEN, CLOSE = "<%", "%>"


@dataclass(frozen=True)
class Case:
    name: str
    template: str
    context: dict[str, Any]
    expected: str | None
    error: str | None
    helm: bool

    @property
    def fleet_form(self) -> str:
        return self.template.replace(OPEN, "${").replace(CLOSE, "}")

    @property
    def helm_form(self) -> str:
        return self.template.replace(OPEN, "{{").replace(CLOSE, "}}")


def load_cases() -> list[Case]:
    doc = yaml.safe_load(CORPUS.read_text())
    default_ctx = doc["defaults"]
    cases = []
    for raw in doc["cases"]:
        cases.append(
            Case(
                name=raw["name"],
                template=raw["template"],
                context=raw.get("context", default_ctx),
                expected=raw.get("expected"),
                error=raw.get("error"),
                helm=raw.get("helm", "error" not in raw),
            )
        )
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases
