"""Real local components for the tests, the benchmarks and the demo: control planes, an OCI registry, an HTTP
chart repository, the provisioned tools, the background dev stack.

Not part of the helmops package (the wheel and the image do not carry it). It is imported as ``support``
with ``tests/`` on ``sys.path``: pytest's ``pythonpath`` setting in pyproject.toml puts it there for the test
suite, and the ``hack/`` scripts set ``PYTHONPATH``. It imports nothing from helmops.
"""
