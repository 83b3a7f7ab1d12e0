"""Values on helm's stdin: characters outside the BMP must reach helm as UTF-8, not as JSON surrogate pairs."""

from __future__ import annotations

import json

from helmops.helm.command import utf8_json


def test_surrogate_pairs_become_raw_utf8() -> None:
    values = {"message": "héllo wörld ✓ 日本語 🚀", "n": 1, "nested": {"list": ["🚀", None, True]}}
    sent = json.dumps(values).encode()  # what pyhelm3 writes
    assert b"\\ud83d\\ude80" in sent
    out = utf8_json(sent)
    assert "🚀".encode() in out and b"\\ud83d" not in out
    assert json.loads(out) == values


def test_anything_else_is_passed_through() -> None:
    for data in (b"message: plain yaml\n", b"\xff\xfe not text", b""):
        assert utf8_json(data) == data
