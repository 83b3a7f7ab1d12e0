"""Bounded decoding of Helm release Secrets, which a tenant can write in its own namespace."""

from __future__ import annotations

import base64
import gzip
import json
import time

import pytest
from gzip_bombs import gzip_repeated

from helmops.clusters.live import decode_release as readiness_decode  # what readiness decodes with
from helmops.drift.monitor import decode_release as drift_decode  # what drift decodes with
from helmops.reconcile.storage import (
    BadRelease,
    ReleaseLimits,
    ReleaseTooLarge,
    decode_release,
    encode_release,
    release_limits,
)

MIB = 1 << 20


def api_value(raw: bytes) -> str:
    """What the Kubernetes API returns for a Secret key holding Helm's base64 of ``raw``."""
    return base64.b64encode(base64.b64encode(raw)).decode()


def gzip_bomb_json(size: int) -> bytes:
    """gzip of a JSON string of ``size`` spaces, built from one compressed MiB."""
    return gzip_repeated((b'{"manifest": "', 1), (b" " * MIB, size // MIB), (b'"}', 1))


def test_gzip_bomb_helper_is_really_a_bomb() -> None:
    assert gzip.decompress(gzip_bomb_json(3 * MIB)) == b'{"manifest": "' + b" " * (3 * MIB) + b'"}'


def test_round_trip_through_both_callers() -> None:
    record = {"name": "r", "version": 3, "manifest": "apiVersion: v1\nkind: ConfigMap\n"}
    value = encode_release(record)
    assert decode_release(value) == drift_decode(value) == readiness_decode(value) == record
    assert decode_release(base64.b64encode(json.dumps(record).encode()).decode(), api_encoded=False) == record


def test_gzip_bomb_stops_at_the_decoded_limit_fast() -> None:
    bomb = api_value(gzip_bomb_json(512 * MIB))
    assert len(bomb) < 1 * MIB  # fits in one Secret
    t0 = time.monotonic()
    for decode in (decode_release, drift_decode, readiness_decode):
        with pytest.raises(ReleaseTooLarge, match="exceeds 32 MiB once decompressed"):
            decode(bomb)
    assert time.monotonic() - t0 < 10
    t0 = time.monotonic()
    for _ in range(100):  # every drift pass lists it again: refused from memory, not re-inflated
        with pytest.raises(ReleaseTooLarge, match="exceeds 32 MiB once decompressed"):
            drift_decode(bomb)
    assert time.monotonic() - t0 < 2


def test_encoded_size_is_checked_before_decoding() -> None:
    with pytest.raises(ReleaseTooLarge, match=r"exceeds 0\.5 MiB encoded"):
        decode_release("A" * (MIB // 2 + 4), limits=ReleaseLimits(max_encoded=MIB // 2))


def test_deep_json_is_cut_and_garbage_is_a_value_error() -> None:
    deep = b'{"manifest": "", "chart": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert decode_release(api_value(gzip.compress(deep)))["manifest"] == ""  # cut by the bounded loader
    for raw in (b"not json", b"[1, 2]"):
        with pytest.raises(BadRelease):
            decode_release(api_value(raw))
    with pytest.raises(BadRelease):
        decode_release(api_value(b"\x1f\x8b\x08garbage"))
    assert issubclass(BadRelease, ValueError)  # existing callers already skip and log ValueErrors


def test_manifest_alias_bomb_and_deep_manifest_are_refused() -> None:
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    with pytest.raises(ReleaseTooLarge, match="expands past 2000000 YAML nodes"):
        decode_release(encode_release({"manifest": laughs}))
    deep = "k: " + "[" * 300 + "]" * 300 + "\n"
    with pytest.raises(ReleaseTooLarge, match="deeper than 200 levels"):
        decode_release(encode_release({"manifest": deep}))
    fine = "a: &x {b: 1}\nc: *x\n"
    assert decode_release(encode_release({"manifest": fine}))["manifest"] == fine


def test_limits_from_env() -> None:
    lim = release_limits({"HELMOPS_RELEASE_MAX_DECODED_MIB": "8", "HELMOPS_RELEASE_MAX_ENCODED_MIB": "x"})
    assert lim.max_decoded == 8 * MIB and lim.max_encoded == ReleaseLimits().max_encoded
