"""Shared caches: single-flight de-duplication and the content-addressed chart store.

One :class:`~helmops.sources.ChartSources` serves every HelmApp and cluster, so the same index or chart is
asked for many times at once.  ``SingleFlight`` makes concurrent callers share one in-progress fetch;
``ChartStore`` keeps each chart archive once on disk, named by its sha256, written atomically, and only
after the archive passed the bomb/path checks in :mod:`.archive`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

from helmops import tasks

from .archive import ArchiveInfo, check_chart_archive
from .limits import SourceLimits

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

__all__ = ["LRU", "ChartStore", "SingleFlight", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SingleFlight(Generic[K, V]):
    """Collapse concurrent calls for one key into one execution.

    The shared work runs as its own task and each caller awaits it through ``asyncio.shield``: one caller
    being cancelled (a HelmApp deleted mid-fetch) does not cancel the fetch for the others.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[tuple[V | None, Exception | None]]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def do(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Run ``work`` once per key at a time; returns (result, shared) where shared means we joined."""
        task = self._running.get(key)
        joined = task is not None
        if task is None:
            task = tasks.shared(work)  # never ends in an exception: each waiter re-raises it (helmops.tasks)
            self._running[key] = task
            task.add_done_callback(lambda t, k=key: self._finish(k, t))  # type: ignore[misc]
        return await tasks.outcome(task), joined

    def _finish(self, key: K, task: asyncio.Task[tuple[V | None, Exception | None]]) -> None:
        if self._running.get(key) is task:
            del self._running[key]


class LRU(Generic[K, V]):
    """A small ordered map bounded by entry count and by a caller-supplied size per entry."""

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V, size: int = 0) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.total_bytes -= old[1]
        self._data[key] = (value, size)
        self.total_bytes += size
        while len(self._data) > self.max_entries or (
            self.max_bytes is not None and self.total_bytes > self.max_bytes and len(self._data) > 1
        ):
            _, (_, dropped) = self._data.popitem(last=False)
            self.total_bytes -= dropped

    def pop(self, key: K) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.total_bytes -= old[1]


class ChartStore:
    """``<cache>/charts/sha256/<hex>.tgz``: immutable files, written to a temp file and renamed into place.

    Nothing enters the store (and :meth:`has` answers no) until :func:`~.archive.check_chart_archive`
    has passed it in this process: files left by an earlier process, or by anything else writing to the
    cache directory, are checked again before helm is handed them.
    """

    def __init__(self, cache_dir: Path, limits: SourceLimits | None = None) -> None:
        self.root = cache_dir / "charts" / "sha256"
        self.tmp = cache_dir / "charts" / "tmp"
        self.limits = limits or SourceLimits()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._checked: dict[str, ArchiveInfo] = {}

    def path(self, hex_digest: str) -> Path:
        return self.root / f"{hex_digest}.tgz"

    def has(self, hex_digest: str) -> bool:
        """True for an archive that passed the check in this process and is still on disk."""
        return hex_digest in self._checked and self.path(hex_digest).is_file()

    def info(self, hex_digest: str) -> ArchiveInfo | None:
        """What the check found in a stored archive (name and version from its Chart.yaml)."""
        return self._checked.get(hex_digest) if self.has(hex_digest) else None

    def put(self, data: bytes, where: str = "chart archive") -> tuple[str, Path]:
        """Blocking: call through ``asyncio.to_thread``.  Raises if the archive fails the check."""
        hex_digest = sha256_hex(data)
        dest = self.path(hex_digest)
        if hex_digest in self._checked and dest.is_file():
            return hex_digest, dest
        info = check_chart_archive(data, where, self.limits)
        if not dest.is_file():
            fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp_name, 0o644)
                os.replace(tmp_name, dest)
            except BaseException:
                try:
                    os.unlink(tmp_name)
                except FileNotFoundError:
                    pass
                raise
        self._checked[hex_digest] = info
        return hex_digest, dest

    def adopt(self, tmp_file: Path, hex_digest: str, where: str = "chart archive") -> Path:
        """Blocking: check an already-verified temp file (inside ``self.tmp``) and move it into place."""
        info = check_chart_archive(tmp_file, where, self.limits)
        dest = self.path(hex_digest)
        os.chmod(tmp_file, 0o644)
        os.replace(tmp_file, dest)
        self._checked[hex_digest] = info
        return dest

    def new_temp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        os.close(fd)
        return Path(name)
