"""Benchmarks for helmops against the helm binary itself (``hack/bench/run``, ``make bench``).

Every scenario starts its own real components through :mod:`helmops.testing`, prints a table and writes a
JSON document; nothing here asserts a target: the figures are reported, and docs/benchmarks.md records them.
"""
