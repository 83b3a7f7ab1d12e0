"""Benchmarks for helmops against the helm binary itself (``hack/bench/run``, ``make bench``).

Every scenario starts its own real components through :mod:`support` (``tests/support``), prints a table and
writes a JSON document; nothing here asserts a target: the figures are reported, and docs/benchmarks.md records
them. Not part of the helmops package: imported as ``bench`` with ``hack/`` and ``tests/`` on ``PYTHONPATH``
(``hack/bench/run`` sets it; pytest's ``pythonpath`` setting does for the unit tests).
"""
