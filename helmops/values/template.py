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
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

import gotpl
from gotpl import FunctionResult
from gotpl.errors import BudgetExceededError
from gotpl.funcs.sprig import text_func_map
from gotpl.runtime.sync_vm import _builtin_functions  # the Go builtins, to wrap print/printf & co
from gotpl.runtime.values import UNTYPED_NIL

from .errors import TemplateError

DELIMITERS: Final = ("${", "}")

_CLOCK = "it reads the controller's clock or time zone, so the rendered values would change between reconciles"
_RANDOM = "it is random, so every reconcile would render different values and redeploy the release"
_HOST = "it reads the controller's environment, files or network, which a values template must not see"

#: Functions a helmops values template may not call, with the reason given in the error message.
#: `include`/`tpl`/`required`/`lookup`/`toYaml` are Helm's own functions: they never existed in Fleet's
#: `${ }` templating either, but users copy them from charts, so they get a clear message too.
FORBIDDEN_FUNCTIONS: Final[Mapping[str, str]] = {
    # environment, files, network
    "env": _HOST,
    "expandenv": _HOST,
    "getHostByName": _HOST,
    "include": "it is a Helm chart function; values templates have no named templates to include",
    "tpl": "it is a Helm chart function; a values template cannot render another template",
    "lookup": "it is a Helm chart function that reads the cluster; templates see only the cluster context",
    "required": "it is a Helm chart function; use `fail` or missing keys (which are errors) instead",
    "toYaml": "it is a Helm chart function, not part of Sprig; use toJson (JSON is valid YAML)",
    "fromYaml": "it is a Helm chart function, not part of Sprig; use fromJson",
    # clock and local time zone
    "now": _CLOCK,
    "ago": _CLOCK,
    "date": _CLOCK,
    "dateInZone": _CLOCK,
    "date_in_zone": _CLOCK,
    "dateModify": _CLOCK,
    "date_modify": _CLOCK,
    "mustDateModify": _CLOCK,
    "must_date_modify": _CLOCK,
    "htmlDate": _CLOCK,
    "htmlDateInZone": _CLOCK,
    "toDate": _CLOCK,
    "mustToDate": _CLOCK,
    "unixEpoch": _CLOCK,
    # randomness (including crypto helpers that draw random keys, salts or IVs)
    "uuidv4": _RANDOM,
    "randAlpha": _RANDOM,
    "randAlphaNum": _RANDOM,
    "randAscii": _RANDOM,
    "randBytes": _RANDOM,
    "randNumeric": _RANDOM,
    "randInt": _RANDOM,
    "shuffle": _RANDOM,
    "genPrivateKey": _RANDOM,
    "genCA": _RANDOM,
    "genCAWithKey": _RANDOM,
    "genSelfSignedCert": _RANDOM,
    "genSelfSignedCertWithKey": _RANDOM,
    "genSignedCert": _RANDOM,
    "genSignedCertWithKey": _RANDOM,
    "encryptAES": _RANDOM,
    "bcrypt": _RANDOM,
    "htpasswd": _RANDOM,
    # Go's `call` invokes a function value found in the data; our data never holds functions
    "call": "values templates have no function values to call",
}

#: Per-render limits. Generous for real values files (the whole HelmApp is at most ~1.5 MiB in etcd), small
#: enough that a runaway template fails in well under a second.
BUDGET: Final = gotpl.ExecutionBudget(
    max_output_chars=4_000_000,
    max_iterations=100_000,
    max_template_depth=100,
    max_function_calls=50_000,
)
#: Largest single value a function may return (characters of a string, or nodes + characters of a list/map).
MAX_VALUE_UNITS: Final = 1_000_000
#: Sum over all function results measured in one render.
MAX_TOTAL_UNITS: Final = 8_000_000
#: Longest template source accepted (characters).
MAX_SOURCE_CHARS: Final = 4_000_000


#: Wall-clock time one HelmApp's values may take to render for one cluster (all its templates together).
WALL_BUDGET_SECONDS: Final = 2.0
#: Cost units (about a microsecond of work each on a slow core) that costly calls may spend per render;
#: a single call estimated above what is left is refused before it runs.
MAX_COST_UNITS: Final = 2_000_000
#: Fixed cost of one derivePassword call (scrypt with N=32768, r=8, p=2: ~0.1-0.5 s and 32 MiB per call).
DERIVE_PASSWORD_COST: Final = 500_000


@dataclass
class _Meter:
    used: int = 0


@dataclass
class _Clock:
    """Wall-time and cost budget of one render session (one HelmApp's values for one cluster)."""

    deadline: float
    seconds: float
    cost: int = 0


_METER: ContextVar[_Meter | None] = ContextVar("helmops_values_template_meter", default=None)
_SESSION: ContextVar[_Clock | None] = ContextVar("helmops_values_template_clock", default=None)


@contextlib.contextmanager
def render_budget(seconds: float = WALL_BUDGET_SECONDS) -> Iterator[None]:
    """Every `render_template` inside shares one wall-time and cost budget (nested uses keep the outer one)."""
    if _SESSION.get() is not None:
        yield
        return
    token = _SESSION.set(_Clock(time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _SESSION.reset(token)


def _check_clock(name: str) -> None:
    clock = _SESSION.get()
    if clock is not None and time.monotonic() > clock.deadline:
        raise BudgetExceededError(
            f"wall-time budget exceeded: rendering took more than {clock.seconds:g}s (stopped at {name})"
        )


_REPEAT_BOUND = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_REGEX_SUBJECT_ARG: Final[Mapping[str, int]] = {
    "regexMatch": 1,
    "mustRegexMatch": 1,
    "regexFind": 1,
    "mustRegexFind": 1,
    "regexFindAll": 1,
    "mustRegexFindAll": 1,
    "regexReplaceAll": 1,
    "mustRegexReplaceAll": 1,
    "regexReplaceAllLiteral": 1,
    "mustRegexReplaceAllLiteral": 1,
    "regexSplit": 1,
    "mustRegexSplit": 1,
}


def _pattern_weight(pattern: str) -> int:
    """Rough size of the matcher a pattern compiles to: the engine walks every state for every input
    character, and counted repetitions copy their atom (nested ones multiply, so the product is used)."""
    weight = 1
    for low, high in _REPEAT_BOUND.findall(pattern):
        bound = int((high or low)[:7] or 1)
        weight = min(weight * max(1, bound), 10**9)
    return min((len(pattern) + 1) * weight, 10**12)


def call_cost(name: str, args: tuple[object, ...]) -> int:
    """Estimated cost units of one call, for the functions whose single call can run long; 0 for the rest
    (those are bounded by the call count, the value sizes and the clock between calls)."""
    if name == "derivePassword":
        return DERIVE_PASSWORD_COST
    if name in ("uniq", "mustUniq") and args:
        n = _len(args[0])
        return n * n  # Go-equality comparisons, pairwise
    index = _REGEX_SUBJECT_ARG.get(name)
    if index is not None and len(args) > index and args and isinstance(args[0], str):
        passes = 2 if name.endswith(("Match", "Find")) else 4  # all-matches scans restart after each match
        return _len(args[index]) * _pattern_weight(args[0]) * passes
    return 0


def _charge_cost(name: str, args: tuple[object, ...]) -> None:
    cost = call_cost(name, args)
    if not cost:
        return
    clock = _SESSION.get()
    spent = clock.cost if clock is not None else 0
    if spent + cost > MAX_COST_UNITS:
        raise BudgetExceededError(
            f"cost budget exceeded: this call of {name} is estimated at {cost} units and the render has "
            f"{max(0, MAX_COST_UNITS - spent)} of {MAX_COST_UNITS} left; {name} is costly (use smaller inputs "
            "or fewer calls)"
        )
    if clock is not None:
        clock.cost += cost


def _too_big(what: str, requested: int) -> BudgetExceededError:
    return BudgetExceededError(
        f"value-size budget exceeded: {what} would be {requested} units, limit {MAX_VALUE_UNITS}"
    )


def _measure(value: object, limit: int) -> int:
    """Size of `value` in units, counting shared sub-structures once per path; stops once past `limit`.

    Counting paths rather than objects is the point: `list $l $l` repeated 60 times builds only 60 objects,
    but printing it would produce 2**60 elements. Each node costs 1 unit, each string character 1 more.
    """
    total = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        total += 1
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
            continue
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
            total += sum(len(k) if isinstance(k, str) else 1 for k in item)
        elif isinstance(item, list | tuple | set | frozenset):
            children = item
        else:
            continue
        for sub in children:
            kind = type(sub)
            if kind is str:
                total += 1 + len(sub)  # type: ignore[arg-type]
            elif kind is int or kind is float or kind is bool or sub is None:
                total += 1
            else:
                stack.append(sub)
        if total > limit:
            return total
    return total


def _charge(result: object, name: str) -> None:
    meter = _METER.get()
    remaining = MAX_TOTAL_UNITS - (meter.used if meter else 0)
    size = _measure(result, min(MAX_VALUE_UNITS, remaining))
    if size > MAX_VALUE_UNITS:
        raise _too_big(f"the result of {name}", size)
    if meter is not None:
        meter.used += size
        if meter.used > MAX_TOTAL_UNITS:
            raise BudgetExceededError(
                f"value-size budget exceeded: function results total more than {MAX_TOTAL_UNITS} units"
            )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _len(value: object) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


_PRINTF_NUMBER = re.compile(r"%[-+# 0]*(\d*)(?:\.(\d*))?")


def _precheck(name: str, args: tuple[object, ...]) -> None:
    """Reject calls whose result is known to be too big before the allocation happens."""
    estimate = 0
    if name == "repeat" and len(args) == 2:
        count = _as_int(args[0])
        estimate = (count or 0) * _len(args[1])
    elif name in ("until", "untilStep", "seq") and args:
        ints = [_as_int(a) for a in args]
        if all(i is not None for i in ints):
            values = [i for i in ints if i is not None]
            if name == "until":
                estimate = abs(values[0])
            elif name == "untilStep" and len(values) == 3 and values[2]:
                estimate = abs((values[1] - values[0]) // values[2])
            elif name == "seq":
                if len(values) == 3:
                    estimate = abs((values[2] - values[0]) // values[1]) * 8 if values[1] else 0
                else:
                    estimate = (abs(values[-1] - (values[0] if len(values) == 2 else 1)) + 1) * 8
    elif name in ("indent", "nindent") and len(args) == 2:
        spaces = _as_int(args[0]) or 0
        text = args[1] if isinstance(args[1], str) else ""
        estimate = spaces * (text.count("\n") + 1) + len(text)
    elif name == "printf" and args and isinstance(args[0], str):
        for match in _PRINTF_NUMBER.finditer(args[0]):
            for group in match.groups():
                if group:
                    estimate = max(estimate, int(group[:9]) if len(group) < 10 else MAX_VALUE_UNITS + 1)
        if "*" in args[0]:
            estimate = max([estimate, *(abs(_as_int(a) or 0) for a in args[1:])])
    elif name in ("wrapWith",) and len(args) == 3:
        estimate = _len(args[2]) * (1 + _len(args[1]))
    elif name == "replace" and len(args) == 3 and all(isinstance(a, str) for a in args):
        old, new, text = (str(a) for a in args)
        hits = text.count(old) if old else len(text) + 1
        estimate = len(text) + hits * len(new)
    elif name in (
        "regexReplaceAll",
        "regexReplaceAllLiteral",
        "mustRegexReplaceAll",
        "mustRegexReplaceAllLiteral",
    ):
        if len(args) == 3:
            estimate = _len(args[1]) + (_len(args[1]) + 1) * _len(args[2])
    elif name == "join" and len(args) == 2:
        estimate = _len(args[0]) * _len(args[1])
    if estimate > MAX_VALUE_UNITS:
        raise _too_big(f"the result of {name}", estimate)


_JSON_FUNCTIONS = frozenset({"toJson", "mustToJson", "toPrettyJson", "mustToPrettyJson", "toRawJson", "mustToRawJson"})


def _without_nil_literal(value: object) -> object:
    """Go's `nil` literal stored in a dict/list (`dict "a" nil`) is JSON null, as in Go."""
    if value is UNTYPED_NIL:
        return None
    if isinstance(value, dict):
        return {k: _without_nil_literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nil_literal(v) for v in value]
    return value


def _guarded(name: str, function: Callable[..., object]) -> Callable[..., object]:
    json_like = name in _JSON_FUNCTIONS

    @functools.wraps(function)  # keeps the signature gotpl inspects for arity and argument types
    def call(*args: object) -> object:
        _check_clock(name)
        _precheck(name, args)
        _charge_cost(name, args)
        if json_like:
            args = tuple(_without_nil_literal(a) for a in args)
        result = function(*args)
        _check_clock(name)
        _charge(result.value if isinstance(result, FunctionResult) else result, name)
        return result

    return call


def _function_map() -> dict[str, Callable[..., object]]:
    functions: dict[str, Callable[..., object]] = {}
    for name, function in text_func_map().items():
        if name not in FORBIDDEN_FUNCTIONS:
            functions[name] = _guarded(name, function)
    # Go builtins whose result can grow (printf "%s%s" $s $s in a loop doubles a string each time)
    builtins = _builtin_functions("go")
    for name in ("print", "printf", "println", "html", "js", "urlquery"):
        functions[name] = _guarded(name, builtins[name])
    return functions


FUNCTIONS: Final[Mapping[str, Callable[..., object]]] = _function_map()
#: Every function name a values template may call (Sprig minus the forbidden ones, plus Go's builtins).
ALLOWED_FUNCTIONS: Final[frozenset[str]] = frozenset(FUNCTIONS) | frozenset(
    n for n in _builtin_functions("go") if n not in FORBIDDEN_FUNCTIONS
)

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
    token = _METER.set(_Meter())
    try:
        with render_budget():
            return compiled.render(data)
    except gotpl.TemplateExecutionError as err:
        raise _execution_error(err, name, source) from None
    except RecursionError:
        raise TemplateError(f"template: {name}: value nesting too deep to render") from None
    except gotpl.TemplateError as err:
        raise TemplateError(f"template: {name}: {err}") from None
    finally:
        _METER.reset(token)
