"""Make kopf parse API responses with :func:`helmops.kubeio.bounded.loads`.

kopf 1.45 parses watch-stream lines with its module-level ``json.loads`` and list/get/patch/post/delete
responses with aiohttp's ``response.json()`` (``json.loads`` again), all in ``kopf._cogs.clients.api``. A
``RecursionError`` from either ends kopf's watcher and with it the operator, so one deeply nested object
kills the controller each time it restarts. The patch swaps the module's ``json`` for a namespace whose
``loads`` is bounded, and its four request helpers for versions that read the body and parse it the same
way; every other module calls them through the module attribute (``api.get(...)``), so this one place is
enough. It is applied once, at controller start (``helmops.runtime.app``), and checks the shape of what
it replaces so that a kopf upgrade that moves things fails loudly instead of silently unpatching.
"""

from __future__ import annotations

import json
import types
from typing import Any

from helmops.kubeio.bounded import loads

__all__ = ["apply", "is_applied"]

_MARK = "__helmops_bounded_json__"
_HELPERS = ("get", "post", "patch", "delete")


def _helper(method: str, request: Any) -> Any:
    async def call(url: str, **kwargs: Any) -> Any:
        response = await request(method=method, url=url, **kwargs)
        async with response:
            body = await response.read()
        # as aiohttp's response.json(): an empty body is None
        return loads(body) if body.strip() else None

    call.__name__ = call.__qualname__ = method
    call.__doc__ = f"kopf's api.{method}, parsing the response with helmops' bounded JSON loader."
    setattr(call, _MARK, True)
    return call


def apply() -> None:
    """Patch kopf's API module (idempotent). Raises RuntimeError if kopf's layout is not the expected one."""
    from kopf._cogs.clients import api as _api

    api: Any = _api

    if is_applied():
        return
    request = getattr(api, "request", None)
    if (
        getattr(api, "json", None) is not json
        or request is None
        or not all(callable(getattr(api, h, None)) for h in _HELPERS)
    ):
        raise RuntimeError("kopf._cogs.clients.api changed shape: cannot install the bounded JSON loader")
    shim = types.SimpleNamespace(loads=loads, dumps=json.dumps, JSONDecodeError=json.JSONDecodeError)
    setattr(shim, _MARK, True)
    api.json = shim
    for method in _HELPERS:
        setattr(api, method, _helper(method, request))


def is_applied() -> bool:
    """True when kopf's watch stream and request helpers use the bounded loader."""
    from kopf._cogs.clients import api as _api

    api: Any = _api

    return bool(getattr(api.json, _MARK, False)) and all(getattr(getattr(api, h), _MARK, False) for h in _HELPERS)
