"""Shared caches: single-flight de-duplication and the content-addressed chart store.

One :class:`~helmops.sources.ChartSources` serves every HelmApp and cluster, so the same index or chart is
asked for many times at once.  ``SingleFlight`` makes concurrent callers share one in-progress fetch;
``ChartStore`` keeps each chart archive once on disk, named by its sha256, written atomically, and only
after the archive passed the bomb/path checks in :mod:`.archive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

from helmops import tasks

from .archive import ArchiveInfo, check_chart_archive
from .errors import SourceUnavailable
from .limits import SourceLimits

log = logging.getLogger("helmops.sources")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

__all__ = ["LRU", "CacheFull", "ChartStore", "SingleFlight", "sha256_hex", "usable_cache_dir"]


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


#: charts used in the last this many seconds are never evicted (another process may be about to hand one
#: to helm); the store may exceed its bound by them for that long.
EVICT_GRACE = 300.0
#: a use refreshes an entry's mtime (its place in the LRU order) at most this often.
TOUCH_EVERY = 60.0
#: temp files older than this are leftovers of a process that died mid-write.
STALE_TEMP = 3600.0
#: errors that mean "the filesystem under the cache is full" (or read-only): the store degrades, never crashes.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def usable_cache_dir(wanted: Path) -> Path:
    """Blocking: ``wanted`` when a file can be created in it, else a private temporary directory (WARNING):
    an unwritable or full cache volume costs downloads, never the start of the process."""
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=wanted):
            pass
        return wanted
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="helmops-charts-"))
        log.warning(
            "chart cache: %s is not usable (%s); using %s for this process (charts are downloaded again after a "
            "restart)", wanted, os.strerror(exc.errno or 0) if exc.errno else exc, fallback,
        )  # fmt: skip
        return fallback


class CacheFull(SourceUnavailable):
    """The chart cache's filesystem has no room for a chart (after evicting what could go): retried later."""


class ChartStore:
    """``<cache>/charts/sha256/<hex>.tgz``: immutable files, written to a temp file and renamed into place.

    The directory may outlive the process (``HELMOPS_CHART_CACHE_DIR``, a volume) and be shared by two
    processes (a rolling update). So: a file enters only by ``os.replace`` of a complete temp file (no reader
    sees a partial one); a file left by an earlier process is re-hashed against its name and checked by
    :func:`~.archive.check_chart_archive` before it is used (:meth:`present`; a corrupt or truncated one is
    deleted and downloaded again); the total size is bounded by ``max_bytes`` with least-recently-used
    eviction, the mtime being the "last used" time every process sees (a use touches it); eviction tolerates
    files another process removed and spares files used in the last :data:`EVICT_GRACE` seconds. On a full
    filesystem a write evicts what it can and retries once, then fails with :class:`CacheFull` (retryable,
    a condition on the HelmApp); the partial temp file is removed, so nothing corrupt is ever left.
    """

    def __init__(self, cache_dir: Path, limits: SourceLimits | None = None, *, max_bytes: int | None = None) -> None:
        self.root = cache_dir / "charts" / "sha256"
        self.tmp = cache_dir / "charts" / "tmp"
        self.limits = limits or SourceLimits()
        #: bound on the stored archives' total size (None: unbounded).
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._checked: dict[str, ArchiveInfo] = {}
        self._touched: dict[str, float] = {}
        self.evicted = 0
        self.discarded = 0
        self._clear_stale_temps()

    def path(self, hex_digest: str) -> Path:
        return self.root / f"{hex_digest}.tgz"

    def has(self, hex_digest: str) -> bool:
        """True for an archive that passed the check in this process and is still on disk."""
        return hex_digest in self._checked and self.path(hex_digest).is_file()

    async def present(self, hex_digest: str) -> bool:
        """Is a verified archive with this digest on disk? An archive left by an earlier (or another) process
        is verified first, off the event loop; a use marks it recently used."""
        if self.has(hex_digest):
            await asyncio.to_thread(self._touch, hex_digest)
            return True
        return await asyncio.to_thread(self.verify, hex_digest)

    def verify(self, hex_digest: str) -> bool:
        """Blocking: adopt a file already in the store after re-hashing and checking it; a bad one is deleted."""
        dest = self.path(hex_digest)
        try:
            data = dest.read_bytes() if dest.stat().st_size <= self.limits.max_chart_bytes else b""
        except OSError:
            return False
        if sha256_hex(data) != hex_digest:
            log.warning("chart cache: %s does not match its digest (corrupt or truncated); discarded", dest.name)
            self._discard(dest)
            return False
        try:
            info = check_chart_archive(data, f"cached chart sha256:{hex_digest[:12]}", self.limits)
        except Exception as exc:  # a file that passes the digest but not the checks: never hand it to helm
            log.warning("chart cache: %s fails the archive checks (%s); discarded", dest.name, exc)
            self._discard(dest)
            return False
        self._checked[hex_digest] = info
        self._touch(hex_digest, force=True)
        return True

    def info(self, hex_digest: str) -> ArchiveInfo | None:
        """What the check found in a stored archive (name and version from its Chart.yaml)."""
        return self._checked.get(hex_digest) if self.has(hex_digest) else None

    def put(self, data: bytes, where: str = "chart archive") -> tuple[str, Path]:
        """Blocking: call through ``asyncio.to_thread``.  Raises if the archive fails the check, and
        :class:`CacheFull` when the filesystem has no room for it."""
        hex_digest = sha256_hex(data)
        dest = self.path(hex_digest)
        if hex_digest in self._checked and dest.is_file():
            return hex_digest, dest
        info = check_chart_archive(data, where, self.limits)
        if not dest.is_file():
            self._with_room(lambda: self._write(data, dest), len(data), where)
        self._checked[hex_digest] = info
        self._touch(hex_digest, force=True)
        self.evict(keep=hex_digest)
        return hex_digest, dest

    def _write(self, data: bytes, dest: Path) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def _with_room(self, write: Callable[[], None], size: int, where: str) -> None:
        """Runs ``write``; on a full filesystem evicts what it can and tries once more, then CacheFull."""
        for attempt in (1, 2):
            try:
                write()
                return
            except OSError as exc:
                if exc.errno not in _NO_ROOM:
                    raise
                if attempt == 1 and self.make_room(size):
                    continue
                raise CacheFull(
                    f"{where}: the chart cache directory {self.root.parent.parent} has no room for it "
                    f"({os.strerror(exc.errno or 0)}); nothing was stored, retrying later"
                ) from None

    def adopt(self, tmp_file: Path, hex_digest: str, where: str = "chart archive") -> Path:
        """Blocking: check an already-verified temp file (inside ``self.tmp``) and move it into place."""
        info = check_chart_archive(tmp_file, where, self.limits)
        dest = self.path(hex_digest)
        os.chmod(tmp_file, 0o644)
        os.replace(tmp_file, dest)
        self._checked[hex_digest] = info
        self._touch(hex_digest, force=True)
        self.evict(keep=hex_digest)
        return dest

    def new_temp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        os.close(fd)
        return Path(name)

    def no_room(self, exc: OSError, where: str, size: int) -> CacheFull | None:
        """For a caller that streams into :meth:`new_temp`: a full filesystem as CacheFull (after making
        room for the next try), None for any other error."""
        if exc.errno not in _NO_ROOM:
            return None
        self.make_room(size)
        return CacheFull(
            f"{where}: the chart cache directory {self.root.parent.parent} has no room for it "
            f"({os.strerror(exc.errno or 0)}); nothing was stored, retrying later"
        )

    # --- size bound --------------------------------------------------------------------------------
    def _entries(self) -> list[tuple[float, int, str]]:
        """(mtime, size, hex) of every stored archive; files another process removes meanwhile are skipped."""
        out = []
        for p in self.root.glob("*.tgz"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out.append((st.st_mtime, st.st_size, p.name[: -len(".tgz")]))
        return out

    def usage(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def evict(self, keep: str = "", target: int | None = None) -> int:
        """Blocking: least recently used archives go until the total is within ``target`` (default
        ``max_bytes``); never ``keep`` nor one used within EVICT_GRACE seconds. Returns the bytes freed."""
        bound = self.max_bytes if target is None else target
        if bound is None:
            return 0
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        now = time.time()
        for mtime, size, hex_digest in entries:
            if total - freed <= bound:
                break
            if hex_digest == keep or now - mtime < EVICT_GRACE:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(hex_digest))
            self._checked.pop(hex_digest, None)
            self._touched.pop(hex_digest, None)
            freed += size
            self.evicted += 1
        return freed

    def make_room(self, size: int) -> bool:
        """On a full filesystem: evict (grace ignored, oldest first) about ``size`` bytes plus a margin."""
        entries = sorted(self._entries())
        freed = 0
        for _, entry_size, hex_digest in entries:
            if freed >= 2 * size:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(hex_digest))
            self._checked.pop(hex_digest, None)
            freed += entry_size
            self.evicted += 1
        self._clear_stale_temps()
        return freed > 0

    # --- bookkeeping -------------------------------------------------------------------------------
    def _touch(self, hex_digest: str, *, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._touched.get(hex_digest, 0.0) < TOUCH_EVERY:
            return
        self._touched[hex_digest] = now
        with contextlib.suppress(OSError):  # evicted by another process meanwhile: the next use re-downloads
            os.utime(self.path(hex_digest))
        if len(self._touched) > 100_000:
            self._touched.clear()

    def _discard(self, path: Path) -> None:
        self.discarded += 1
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _clear_stale_temps(self, max_age: float = STALE_TEMP) -> None:
        now = time.time()
        for p in self.tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > max_age:
                    p.unlink()
