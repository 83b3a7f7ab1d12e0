"""``helmops validate``: check HelmApp manifests offline, as a CI gate.

Every document of every file is parsed with the API models (the schema the CRD enforces) and, when it parses,
checked by ``helmops.api.validate`` (what the controller would refuse or ignore). Cluster and ClusterGroup
documents are checked against their models too; other kinds are reported as skipped (a warning).
Exit 1 when any problem is an error, else 0; warnings are printed either way.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from helmops import GROUP, KIND, VERSION
from helmops.api import (
    Cluster,
    ClusterGroup,
    HelmApp,
    annotation_problems,
    problems_from_validation_error,
    validate,
)
from helmops.api.unknown import unknown_fields
from helmops.cli.common import EXIT_ERROR, EXIT_OK, ManifestError, add_output_flag, dump, load_documents

API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Finding:
    file: str
    index: int
    kind: str
    name: str
    path: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "document": self.index,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "severity": self.severity,
            "message": self.message,
        }

    def line(self) -> str:
        what = f" {self.kind} {self.name}" if self.kind else ""
        return f"{self.file}[{self.index}]{what}: {self.severity}: {self.path}: {self.message}"


def _object_name(body: dict[str, Any]) -> str:
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return ""
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    return f"{namespace}/{name}" if namespace and name else name


def check_document(body: Any) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(kind, name, [(severity, path, message)]) for one parsed YAML document."""
    if not isinstance(body, dict):
        return "", "", [("error", "(document)", f"not a Kubernetes object but a {type(body).__name__}")]
    kind = str(body.get("kind") or "")
    name = _object_name(body)
    found: list[tuple[str, str, str]] = []
    models: dict[str, type[HelmApp] | type[Cluster] | type[ClusterGroup]] = {
        KIND: HelmApp,
        "Cluster": Cluster,
        "ClusterGroup": ClusterGroup,
    }
    model = models.get(kind)
    if model is None:
        what = f"kind {kind!r}" if kind else "a document without kind"
        return kind, name, [("warning", "kind", f"{what} is not checked (only HelmApp, Cluster, ClusterGroup)")]
    api_version = body.get("apiVersion")
    if api_version != API_VERSION:
        found.append(("error", "apiVersion", f"must be {API_VERSION} for a {kind} (is {api_version!r})"))
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        found.append(("error", "metadata.name", "required: the object has no name"))
    if model is HelmApp:  # keys the API server would drop silently (issue 17)
        found.extend((p.severity, p.path, p.message) for p in unknown_fields(body))
    try:
        obj = model.model_validate(body)
    except ValidationError as exc:
        found.extend(("error", p.path, p.message) for p in problems_from_validation_error(exc))
        return kind, name, found
    if isinstance(obj, HelmApp):
        found.extend((p.severity, p.path, p.message) for p in validate(obj.spec))
        # helmops.cattle.io/ annotations (polling interval, safe promotion: docs/promotion.md)
        found.extend((p.severity, p.path, p.message) for p in annotation_problems(obj.metadata.annotations))
    elif isinstance(obj, ClusterGroup) and obj.spec.selector is not None:
        for where, why in obj.spec.selector.problems():
            found.append(("error", f"spec.selector.{where}", why))
    return kind, name, found


def expand(paths: list[str]) -> list[str]:
    """A directory stands for its ``*.yaml``/``*.yml`` files (sorted, not recursive)."""
    out: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            out += sorted(str(p) for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            out.append(path)
    return out


def findings_for(paths: list[str]) -> tuple[list[Finding], int]:
    """Every problem in ``paths`` (files, ``-``, directories) and the number of documents checked."""
    findings: list[Finding] = []
    checked = 0
    for path in expand(paths):
        try:
            docs = load_documents(path)
        except ManifestError as exc:
            findings.append(Finding(exc.source, 0, "", "", "(file)", "error", exc.message))
            continue
        for doc in docs:
            if doc.body is None:
                continue
            checked += 1
            kind, name, problems = check_document(doc.body)
            for severity, where, message in problems:
                findings.append(Finding(doc.source, doc.index, kind, name, where, severity, message))
    # errors first, then in input order
    findings.sort(key=lambda f: f.severity != "error")
    return findings, checked


def run(args: argparse.Namespace) -> int:
    findings, checked = findings_for(args.filename)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    if args.output == "text":
        for f in findings:
            print(f.line())
        print(f"{checked} document(s) checked: {errors} error(s), {warnings} warning(s)")
    else:
        dump(
            {
                "valid": errors == 0,
                "documents": checked,
                "errors": errors,
                "warnings": warnings,
                "problems": [f.as_dict() for f in findings],
            },
            args.output,
        )
    return EXIT_ERROR if errors else EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check HelmApp manifests offline (schema + semantics); exit 1 on errors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 no errors (warnings may be printed), 1 at least one error, 2 usage error",
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="manifest file (multi-document YAML), a directory of *.yaml files, or '-' for stdin (repeatable)",
    )
    add_output_flag(p, ("text", "json", "yaml"), "text")
    p.set_defaults(func=run)
