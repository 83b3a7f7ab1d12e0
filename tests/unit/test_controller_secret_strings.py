"""What the controller masks in helm's output: Secret-derived leaves *and* keys (the API server echoes keys)."""

from __future__ import annotations

from helmops.desired.adapters import secret_strings


def test_secret_map_keys_below_the_top_level_are_masked_too() -> None:
    values = {"extra": {"canary-key bad key!": "x", "ok": "canary-value"}, "image": {"tag": "1.0"}}
    found = secret_strings(values, [("extra", "canary-key bad key!"), ("extra", "ok")])
    assert "canary-key bad key!" in found and "canary-value" in found
    assert "extra" not in found and "image" not in found  # the chart's own top-level value names


def test_keys_inside_a_secret_derived_subtree() -> None:
    values = {"users": {"alice-admin": {"password": "hunter22"}}}
    found = secret_strings(values, [("users",)])
    assert {"alice-admin", "password", "hunter22"} <= set(found) and "users" not in found
