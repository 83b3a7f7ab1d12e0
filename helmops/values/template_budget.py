"""The bounds on one render of a values template: execution budget, value sizes, wall clock and call costs.

The controller renders templates written by any HelmApp author, so one template must not be able to hang or
exhaust the process (see :mod:`helmops.values.template` for the whole design). This module holds the limits
and the accounting; :mod:`helmops.values.template_functions` calls :func:`before_call` and
:func:`after_call` around every function a template calls, and :func:`helmops.values.template.render_template`
opens a :func:`value_meter` (per template) inside a :func:`render_budget` (shared by one HelmApp's templates
for one cluster).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

import gotpl
from gotpl.errors import BudgetExceededError

__all__ = [
    "BUDGET",
    "DERIVE_PASSWORD_COST",
    "MAX_COST_UNITS",
    "MAX_SOURCE_CHARS",
    "MAX_TOTAL_UNITS",
    "MAX_VALUE_UNITS",
    "WALL_BUDGET_SECONDS",
    "after_call",
    "before_call",
    "call_cost",
    "render_budget",
    "value_meter",
]

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


@contextlib.contextmanager
def value_meter() -> Iterator[None]:
    """Function results measured inside count against one fresh :data:`MAX_TOTAL_UNITS` (one template)."""
    token = _METER.set(_Meter())
    try:
        yield
    finally:
        _METER.reset(token)


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


def before_call(name: str, args: tuple[object, ...]) -> None:
    """Checks before a template function runs: the wall clock, a result known to be too big, the call's cost."""
    _check_clock(name)
    _precheck(name, args)
    _charge_cost(name, args)


def after_call(name: str, result: object) -> None:
    """Checks after a template function returned: the wall clock, and the size of its result."""
    _check_clock(name)
    _charge(result, name)
