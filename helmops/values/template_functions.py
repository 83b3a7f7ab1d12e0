"""What a values template may call: Sprig's text functions and Go's builtins, minus the forbidden ones.

Hermetic by construction: a function that would read the process environment, files, the network, the
controller's clock or time zone, or a random source is not registered, so a template using one fails at
parse time with an error naming the function and why (:data:`FORBIDDEN_FUNCTIONS`). Every registered
function is wrapped so that the render's bounds (:mod:`helmops.values.template_budget`) are checked around
each call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Final

from gotpl import FunctionResult
from gotpl.funcs.sprig import text_func_map
from gotpl.runtime.sync_vm import _builtin_functions  # the Go builtins, to wrap print/printf & co
from gotpl.runtime.values import UNTYPED_NIL

from .template_budget import after_call, before_call

__all__ = ["ALLOWED_FUNCTIONS", "FORBIDDEN_FUNCTIONS", "FUNCTIONS"]

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
        before_call(name, args)
        if json_like:
            args = tuple(_without_nil_literal(a) for a in args)
        result = function(*args)
        after_call(name, result.value if isinstance(result, FunctionResult) else result)
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
