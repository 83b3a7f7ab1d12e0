"""Fleet's `${ }` templating: Go `text/template` + Sprig, made hermetic and bounded.

Fleet renders values with Go's `text/template` (delimiters `${` and `}`, `missingkey=error`) and Sprig's text
function map minus `env`, `expandenv`, `include` and `tpl`. We run the same language through `gotpl` (a
pure-Python engine with Sprig v3) and go further in two directions, both on purpose:

* **Hermetic.** A template may only look at the cluster context it is given. Functions that read the process
  environment, the network, the controller's clock or time zone, or a random source are not registered, so a
  template using one fails at parse time with an error naming the function and why. Fleet keeps the clock and
  random functions, and users hit endless redeploys: the rendered values feed the deployment hash, so `uuidv4`
  or `now` make every reconcile look like a change. Here the same inputs always render the same bytes.
* **Bounded.** The controller renders templates written by any HelmApp author, so one template must not be
  able to hang or exhaust the process: an execution budget caps loop iterations, function calls, nesting and
  output, and every function result is measured (strings by length, lists/maps by a bounded walk that also
  catches self-doubling shared structures) against a per-value limit and a per-render total.
* **Timed.** A render has a wall-clock budget (`WALL_BUDGET_SECONDS`, shared by all templates of one HelmApp
  and cluster inside `render_budget()`), checked around every function call: a thread cannot be interrupted,
  so the check lives in the engine's function calls, and functions whose one call can run long (super-linear
  in their input, or a deliberate key derivation) are costed before they run (`call_cost`) and refused when
  the cost would exceed what is left of the render's cost budget.

Errors keep Go's shape, `template: <name>:<line>:<col>: ...`, so users can find the offending spot.

The parts: what a template may call is in :mod:`helmops.values.template_functions`, the bounds and their
accounting in :mod:`helmops.values.template_budget`; this module compiles (with a cache) and renders, and
words errors as Go does.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import gotpl

from .errors import TemplateError
from .template_budget import BUDGET, MAX_SOURCE_CHARS, render_budget, value_meter
from .template_functions import FORBIDDEN_FUNCTIONS, FUNCTIONS

__all__ = ["DELIMITERS", "compile_template", "render_template"]

DELIMITERS: Final = ("${", "}")

_SANDBOX: Final = gotpl.SandboxPolicy(
    allow_functions=FUNCTIONS.keys(),
    # fields of the objects Sprig functions return: semver's Version, buildCustomCert's certificate
    allow_attributes=("Major", "Minor", "Patch", "Cert", "Key"),
    allow_methods=("Prerelease", "Metadata", "Original", "Compare"),
    max_template_chars=MAX_SOURCE_CHARS,
    default_budget=BUDGET,
)

_SYNTAX_PREFIX = re.compile(r"^template:\s*(?:[^:]*:)?(\d+):(\d+):\s*")
_UNDEFINED_FUNCTION = re.compile(r"function '([^']+)' not defined")


def _syntax_error(err: gotpl.TemplateSyntaxError, name: str) -> TemplateError:
    text = _SYNTAX_PREFIX.sub("", str(err), count=1)
    undefined = _UNDEFINED_FUNCTION.search(text)
    if undefined:
        fn = undefined.group(1)
        reason = FORBIDDEN_FUNCTIONS.get(fn)
        if reason is not None:
            text = f'function "{fn}" is not allowed in helmops values templates: {reason}'
        else:
            text = f'function "{fn}" not defined'
    return TemplateError(f"template: {name}:{err.line}:{err.column}: {text}", line=err.line, column=err.column)


_MISSING_KEY = re.compile(r"^missing key or attribute '(.*)'$")
_FUNCTION_FAILED = re.compile(r"^function '([^']+)' failed: ")
_NODE = re.compile(r"[^\s|)}]+")


def _execution_error(err: gotpl.TemplateExecutionError, name: str, source: str) -> TemplateError:
    """Go's wording where it differs: `executing "values" at <.a.b>: map has no entry for key "b"`."""
    detail = _MISSING_KEY.sub(r'map has no entry for key "\1"', err.message)
    detail = _FUNCTION_FAILED.sub(r"error calling \1: ", detail)
    if err.line is None or err.column is None:
        return TemplateError(f"template: {name}: {detail}")
    lines = source.split("\n")
    node = _NODE.match(lines[err.line - 1], err.column - 1) if err.line <= len(lines) else None
    at = f" at <{node.group(0)}>" if node and not node.group(0).startswith(DELIMITERS[0]) else ""
    return TemplateError(
        f'template: {name}:{err.line}:{err.column}: executing "{name}"{at}: {detail}',
        line=err.line,
        column=err.column,
    )


@dataclass
class _Cache:
    """Compiled templates by (name, source): compiling a big values template costs far more than rendering
    it, and the same template is rendered once per target cluster."""

    max_chars: int = 32_000_000
    entries: OrderedDict[tuple[str, str], gotpl.Template] = field(default_factory=OrderedDict)
    chars: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str, source: str) -> gotpl.Template | None:
        with self.lock:
            found = self.entries.get((name, source))
            if found is not None:
                self.entries.move_to_end((name, source))
            return found

    def put(self, name: str, source: str, compiled: gotpl.Template) -> None:
        if len(source) > self.max_chars // 4:
            return
        with self.lock:
            if (name, source) in self.entries:
                return
            self.entries[(name, source)] = compiled
            self.chars += len(source)
            while self.chars > self.max_chars and self.entries:
                (_, old), _ = self.entries.popitem(last=False)
                self.chars -= len(old)


_CACHE = _Cache()


def compile_template(source: str, *, name: str = "values") -> gotpl.Template:
    """Parse `source` with `${ }` delimiters; raises `TemplateError` (with line:col) on bad syntax or a
    forbidden function."""
    cached = _CACHE.get(name, source)
    if cached is not None:
        return cached
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateError(f"template: {name}: template is {len(source)} characters, limit {MAX_SOURCE_CHARS}")
    try:
        compiled = gotpl.Template(
            source,
            name=name,
            delimiters=DELIMITERS,
            functions=FUNCTIONS,
            missing_key="error",
            sandbox=_SANDBOX,
            budget=BUDGET,
        )
    except gotpl.TemplateSyntaxError as err:
        raise _syntax_error(err, name) from None
    except gotpl.TemplateError as err:
        raise TemplateError(f"template: {name}: {err}") from None
    _CACHE.put(name, source, compiled)
    return compiled


def render_template(source: str, data: Mapping[str, Any], *, name: str = "values") -> str:
    """Render one `${ }` template against `data` (the cluster context) and return the text.

    Raises `TemplateError` with a Go-style `template: <name>:<line>:<col>: ...` message.
    """
    compiled = compile_template(source, name=name)
    with value_meter():
        try:
            with render_budget():
                return compiled.render(data)
        except gotpl.TemplateExecutionError as err:
            raise _execution_error(err, name, source) from None
        except RecursionError:
            raise TemplateError(f"template: {name}: value nesting too deep to render") from None
        except gotpl.TemplateError as err:
            raise TemplateError(f"template: {name}: {err}") from None
