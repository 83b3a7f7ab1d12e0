"""How much a chart source may cost us: sizes, counts and waits, checked before anything is read or unpacked.

A tenant chooses the URL a HelmApp points at, so whatever answers there is hostile input: an index with
YAML aliases that expands a thousandfold, a gzip bomb posing as a chart, a registry that lists a million
tags, a server that accepts the connection and never answers.  Every limit here is checked while the
bytes arrive (or while they are decompressed), never after, so one such source costs at most the limit
and the controller keeps its memory (< 500 MB) and its reconcile slots.

Operators can change each limit with an environment variable (``HELMOPS_SOURCE_*``, see
docs/sources.md); :func:`SourceLimits.from_env` reads them, ignoring values that are not positive numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["ENV", "MIB", "SourceLimits"]

log = logging.getLogger("helmops.sources")

MIB = 1 << 20

#: environment variable per field; sizes are given in MiB, times in seconds.
ENV = {
    "connect_timeout": "HELMOPS_SOURCE_CONNECT_TIMEOUT",
    "read_timeout": "HELMOPS_SOURCE_READ_TIMEOUT",
    "total_timeout": "HELMOPS_SOURCE_TIMEOUT",
    "max_index_bytes": "HELMOPS_SOURCE_MAX_INDEX_MIB",
    "max_index_nodes": "HELMOPS_SOURCE_MAX_INDEX_NODES",
    "max_index_values": "HELMOPS_SOURCE_MAX_INDEX_VALUES",
    "max_chart_bytes": "HELMOPS_SOURCE_MAX_CHART_MIB",
    "max_chart_uncompressed": "HELMOPS_SOURCE_MAX_CHART_UNCOMPRESSED_MIB",
    "max_chart_file": "HELMOPS_SOURCE_MAX_CHART_FILE_MIB",
    "max_chart_files": "HELMOPS_SOURCE_MAX_CHART_FILES",
    "max_chart_ratio": "HELMOPS_SOURCE_MAX_CHART_RATIO",
    "max_manifest_bytes": "HELMOPS_SOURCE_MAX_MANIFEST_MIB",
    "max_tag_list_bytes": "HELMOPS_SOURCE_MAX_TAG_LIST_MIB",
    "max_tags": "HELMOPS_SOURCE_MAX_TAGS",
}

_SIZES = frozenset({"max_index_bytes", "max_chart_bytes", "max_chart_uncompressed", "max_chart_file",
                    "max_manifest_bytes", "max_tag_list_bytes"})


@dataclass(frozen=True)
class SourceLimits:
    #: seconds to open a TCP (and TLS) connection.
    connect_timeout: float = 5.0
    #: seconds without a single byte from the server before a request is given up ("hanging" sources).
    read_timeout: float = 10.0
    #: seconds for a whole request, however slowly the bytes trickle in.
    total_timeout: float = 60.0
    #: an index.yaml, as sent (compressed) and once its Content-Encoding is undone.
    max_index_bytes: int = 64 * MIB
    #: YAML events read from an index (aliases count the size of what they repeat), and its nesting.
    max_index_nodes: int = 20_000_000
    max_index_depth: int = 64
    #: values the index reader keeps (versions, URLs, digests and their containers): what bounds its memory,
    #: ~100 bytes each.  A 15 MB real-world index keeps ~100 000.
    max_index_values: int = 1_000_000
    #: a chart archive (.tgz) as downloaded.
    max_chart_bytes: int = 20 * MIB
    #: a chart archive unpacked: all files, one file, number of entries, and uncompressed/compressed.
    max_chart_uncompressed: int = 100 * MIB
    max_chart_file: int = 10 * MIB
    max_chart_files: int = 10_000
    max_chart_ratio: int = 200
    #: an OCI manifest or config blob (compressed or not).
    max_manifest_bytes: int = 4 * MIB
    #: one page of an OCI tag list, and the number of tags over all pages.
    max_tag_list_bytes: int = 8 * MIB
    max_tags: int = 100_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SourceLimits:
        env = os.environ if env is None else env
        values: dict[str, float | int] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                number = float(raw)
            except ValueError:
                number = -1.0
            if not number > 0 or number == float("inf"):
                log.warning("ignoring %s=%r: not a positive number", var, raw)
                continue
            if name in _SIZES:
                values[name] = int(number * MIB)
            elif types[name] in ("int", int):
                values[name] = int(number)
            else:
                values[name] = number
        return cls(**values)  # type: ignore[arg-type]

    def mib(self, name: str) -> str:
        """A size limit as users set it: ``64 MiB`` (fractions kept for small test limits)."""
        value = getattr(self, name)
        return f"{value / MIB:g} MiB"
