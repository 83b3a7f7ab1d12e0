"""Decode a Helm storage Secret's ``release`` value within fixed bounds (and encode one).

The one owner of Helm's release record format for every reader: drift, readiness and day-2 corrections.

A tenant can write Secrets in its own namespace, including ones labelled like Helm's release storage, and
the controller decodes them on every drift check and readiness pass.  Helm stores base64(gzip(JSON)); a
1 MiB Secret of gzip can decompress to gigabytes and its JSON can nest a million levels deep.  So every
step is bounded before it allocates: the encoded length is checked before decoding, gzip is inflated in
chunks and stopped at the limit, ``json.loads`` (C) stops at its recursion limit, and the
rendered manifest inside is checked for YAML alias expansion (the drift and readiness code parse it).

Every refusal is a :class:`BadRelease` (a ``ValueError``; :class:`ReleaseTooLarge` for limits), whose
message names the limit but never quotes the data.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from helmops.kubeio.bounded import loads as bounded_loads

__all__ = ["BadRelease", "ReleaseLimits", "ReleaseTooLarge", "decode_release", "encode_release", "release_limits"]

MIB = 1 << 20


class BadRelease(ValueError):
    """A release record cannot be decoded (not base64, not gzip, not JSON)."""


class ReleaseTooLarge(BadRelease):
    """A release record is over a limit: encoded size, decoded size, nesting or alias expansion."""


@dataclass(frozen=True)
class ReleaseLimits:
    #: characters of the value as the API returns it (base64 of Helm's base64); etcd caps a Secret at ~1.5 MiB.
    max_encoded: int = 4 * MIB
    #: bytes of release JSON once gunzipped (a large chart with CRDs is ~10 MiB).
    max_decoded: int = 32 * MIB
    #: nesting of the rendered manifest's YAML (Kubernetes objects nest ~20 levels).
    max_depth: int = 200
    #: YAML nodes the rendered manifest may expand to through aliases.
    max_manifest_nodes: int = 2_000_000


_ENV = {
    "max_encoded": "HELMOPS_RELEASE_MAX_ENCODED_MIB",
    "max_decoded": "HELMOPS_RELEASE_MAX_DECODED_MIB",
}


def release_limits(env: dict[str, str] | None = None) -> ReleaseLimits:
    """Limits from ``HELMOPS_RELEASE_MAX_ENCODED_MIB`` / ``HELMOPS_RELEASE_MAX_DECODED_MIB`` (else defaults)."""
    env = dict(os.environ) if env is None else env
    values: dict[str, int] = {}
    for name, var in _ENV.items():
        try:
            mib = float(env.get(var, "") or "nan")
        except ValueError:
            continue
        if mib > 0 and mib != float("inf"):
            values[name] = int(mib * MIB)
    return ReleaseLimits(**values)


def _b64(data: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise BadRelease(f"{what} is not base64") from None


def _gunzip(data: bytes, cap: int) -> bytes:
    """Inflate at most ``cap`` bytes, 1 MiB per step (no buffer is grown past the cap, none is copied twice)."""
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            out = z.decompress(data, min(cap - size + 1, MIB))
        except zlib.error:
            raise BadRelease("release record: corrupt gzip data") from None
        chunks.append(out)
        size += len(out)
        if size > cap:
            chunks.clear()
            raise ReleaseTooLarge(f"release record exceeds {cap / MIB:g} MiB once decompressed")
        data = z.unconsumed_tail
        if z.eof or (not data and not out):  # an empty input drains output zlib still holds
            break
    return b"".join(chunks)


def _manifest_ok(manifest: str, max_nodes: int, max_depth: int) -> bool:
    """False if the manifest's YAML aliases would expand past ``max_nodes`` nodes, or it nests deeper than
    ``max_depth`` (the drift comparison recurses through it)."""
    # libyaml's event stream builds nothing: about a quarter of what the callers' full parse costs.
    sizes: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = []
    total = 0
    try:
        for ev in yaml.parse(manifest, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(ev, yaml.AliasEvent):
                n = sizes.get(str(ev.anchor), 1)
            elif isinstance(ev, yaml.ScalarEvent):
                n = 1
                if ev.anchor:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append((ev.anchor, 1))
                if len(stack) > max_depth:
                    return False
                continue
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)) and stack:
                anchor, n = stack.pop()
                if anchor:
                    sizes[anchor] = n
                if stack:
                    a, m = stack[-1]
                    stack[-1] = (a, m + n)
                total += 1
                if total > max_nodes:
                    return False
                continue
            else:
                continue
            total += n
            if total > max_nodes:
                return False
            if stack:
                a, m = stack[-1]
                stack[-1] = (a, m + n)
    except yaml.YAMLError:
        return True  # not YAML: the callers' parsers fail on it cheaply
    return True


def decode_release(
    value: str | bytes, *, api_encoded: bool = True, limits: ReleaseLimits | None = None
) -> dict[str, Any]:
    """``release`` of a Helm storage Secret -> the release record, within ``limits``.  Blocking, but bounded.

    ``api_encoded``: the value is as the Kubernetes API returns ``data`` (base64 of Helm's base64);
    False for the value as Helm wrote it.  Gzip is detected by its magic bytes, as Helm does.
    """
    lim = limits or release_limits()
    if len(value) > lim.max_encoded:
        raise ReleaseTooLarge(f"release record exceeds {lim.max_encoded / MIB:g} MiB encoded")
    # Drift checks list the same Secrets every pass; a refused record is refused again at hashing cost.
    digest = hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()
    key = digest + repr((api_encoded, lim)).encode()
    with _refused_lock:
        known = _refused.get(key)
    if known is not None:
        raise known[0](known[1])
    try:
        return _decode(value, api_encoded, lim)
    except BadRelease as exc:
        with _refused_lock:
            _refused[key] = (type(exc), str(exc))
            while len(_refused) > _REFUSED_MAX:
                _refused.pop(next(iter(_refused)))
        raise


_REFUSED_MAX = 256
_refused: dict[bytes, tuple[type[BadRelease], str]] = {}
_refused_lock = threading.Lock()


def _decode(value: str | bytes, api_encoded: bool, lim: ReleaseLimits) -> dict[str, Any]:
    raw = _b64(value, "release record")
    if api_encoded:
        raw = _b64(raw, "release record")
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, lim.max_decoded)
    elif len(raw) > lim.max_decoded:
        raise ReleaseTooLarge(f"release record exceeds {lim.max_decoded / MIB:g} MiB")
    try:  # chart values of any depth: subtrees past the loader's depth are cut, never recursed into
        data = bounded_loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRelease("release record is not JSON") from None
    if not isinstance(data, dict):
        raise BadRelease("release record is not a JSON object")
    manifest = data.get("manifest")
    if isinstance(manifest, str) and not _manifest_ok(manifest, lim.max_manifest_nodes, lim.max_depth):
        raise ReleaseTooLarge(
            f"release manifest expands past {lim.max_manifest_nodes} YAML nodes through aliases"
            f" or nests deeper than {lim.max_depth} levels"
        )
    return data


def encode_release(record: Mapping[str, Any]) -> str:
    """The inverse of :func:`decode_release`: a value for a Helm storage Secret's ``release`` key, as the
    Kubernetes API takes ``data`` (base64 of Helm's base64 of gzip(JSON))."""
    raw = gzip.compress(json.dumps(record, separators=(",", ":")).encode())
    return base64.b64encode(base64.b64encode(raw)).decode()
