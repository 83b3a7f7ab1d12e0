"""The persistent chart cache (helmops.sources.cache.ChartStore, issue 18 item 3): reuse across processes after
verification, corrupt entries discarded, LRU eviction within a byte bound, two stores on one directory, and a
full filesystem — simulated with a writer that raises ENOSPC, since a tiny tmpfs needs root here."""

from __future__ import annotations

import errno
import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from helmops.sources import cache as cache_mod
from helmops.sources.cache import EVICT_GRACE, CacheFull, ChartStore


def chart(version: str, pad: int = 0) -> bytes:
    """A small valid chart archive (``pad`` bytes of incompressible filler make sizes predictable)."""
    files = {"hello/Chart.yaml": f"apiVersion: v2\nname: hello\nversion: {version}\n".encode()}
    if pad:
        files["hello/files/pad.bin"] = os.urandom(pad)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def age(store: ChartStore, hex_digest: str, seconds: float) -> None:
    """Pretend the entry was last used ``seconds`` ago."""
    t = time.time() - seconds
    os.utime(store.path(hex_digest), (t, t))


async def test_a_new_process_reuses_a_verified_entry(tmp_path: Path) -> None:
    data = chart("1.0.0")
    hex_digest, _ = ChartStore(tmp_path).put(data)
    fresh = ChartStore(tmp_path)  # the restarted process
    assert not fresh.has(hex_digest)  # not trusted before it is verified...
    assert await fresh.present(hex_digest)  # ...which re-hashes and checks it, no download
    assert fresh.has(hex_digest) and fresh.info(hex_digest) is not None


@pytest.mark.parametrize("damage", ["truncate", "flip", "not-a-chart"])
async def test_a_corrupt_or_truncated_entry_is_discarded(tmp_path: Path, damage: str) -> None:
    data = chart("1.0.0")
    hex_digest, path = ChartStore(tmp_path).put(data)
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    else:  # right digest, but not an archive the checks admit: planted under its own hash
        junk = b"<html>not a chart</html>"
        hex_digest = cache_mod.sha256_hex(junk)
        ChartStore(tmp_path).path(hex_digest).write_bytes(junk)
        path = ChartStore(tmp_path).path(hex_digest)
    fresh = ChartStore(tmp_path)
    assert not await fresh.present(hex_digest)
    assert not path.exists() and fresh.discarded == 1
    if damage != "not-a-chart":  # downloaded again: a put restores it
        fresh.put(data)
        assert await fresh.present(hex_digest)


def test_least_recently_used_entries_go_past_the_bound(tmp_path: Path) -> None:
    store = ChartStore(tmp_path, max_bytes=10_000)
    a, _ = store.put(chart("1.0.0", 4000))
    b, _ = store.put(chart("2.0.0", 4000))
    age(store, a, EVICT_GRACE + 20)  # a: oldest
    age(store, b, EVICT_GRACE + 10)
    c, _ = store.put(chart("3.0.0", 4000))  # over 10 000 bytes: a goes, b and c stay
    assert not store.path(a).exists() and store.path(b).exists() and store.path(c).exists()
    assert store.usage() <= 10_000 and store.evicted == 1 and not store.has(a)


def test_recently_used_entries_are_spared(tmp_path: Path) -> None:
    """Another process may be about to hand a just-used chart to helm: the bound waits for the grace."""
    store = ChartStore(tmp_path, max_bytes=5_000)
    a, _ = store.put(chart("1.0.0", 4000))
    b, _ = store.put(chart("2.0.0", 4000))
    assert store.path(a).exists() and store.path(b).exists()
    age(store, a, EVICT_GRACE + 1)
    store.evict()
    assert not store.path(a).exists() and store.path(b).exists()


async def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    one, two = ChartStore(tmp_path, max_bytes=5_000), ChartStore(tmp_path, max_bytes=5_000)
    a, _ = one.put(chart("1.0.0", 4000))
    assert await two.present(a)
    age(one, a, EVICT_GRACE + 1)
    b, _ = two.put(chart("2.0.0", 4000))  # two evicts the entry one verified
    assert not one.has(a) and not await one.present(a)  # one notices and would download again
    one.evict()  # eviction tolerates files the other process removed
    assert await one.present(b)
    assert list(one.tmp.iterdir()) == []  # no partial file left behind by either


class FullDisk:
    """A file object whose writes fail as on a full filesystem."""

    def __init__(self, fd: int, *_: Any, **__: Any) -> None:
        self.fd = fd

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_filesystem_is_a_retryable_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChartStore(tmp_path)
    old, _ = store.put(chart("0.1.0"))
    monkeypatch.setattr(cache_mod.os, "fdopen", FullDisk)
    data = chart("1.0.0")
    with pytest.raises(CacheFull) as err:
        store.put(data, "chart archive http://repo/hello-1.0.0.tgz")
    assert err.value.retryable and "has no room" in err.value.message and "No space left" in err.value.message
    assert list(store.tmp.iterdir()) == []  # the partial temp file is gone
    assert not store.path(cache_mod.sha256_hex(data)).exists()  # no corrupt entry
    assert not store.path(old).exists()  # room was made (the oldest entry evicted) before the retry


def test_full_filesystem_once_then_room_is_made_and_the_write_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChartStore(tmp_path)
    old, _ = store.put(chart("0.1.0"))
    calls: list[int] = []
    real = cache_mod.os.fdopen

    def flaky(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(fd)
        return FullDisk(fd) if len(calls) == 1 else real(fd, *args, **kwargs)

    monkeypatch.setattr(cache_mod.os, "fdopen", flaky)
    hex_digest, path = store.put(chart("1.0.0"))
    assert len(calls) == 2 and path.is_file() and store.has(hex_digest) and not store.path(old).exists()


def test_other_write_errors_are_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(FullDisk):
        def write(self, data: bytes) -> int:
            raise OSError(errno.EIO, "I/O error")

    store = ChartStore(tmp_path)
    monkeypatch.setattr(cache_mod.os, "fdopen", Broken)
    with pytest.raises(OSError, match="I/O error"):
        store.put(chart("1.0.0"))
    assert list(store.tmp.iterdir()) == []


def test_stale_temp_files_of_a_dead_process_are_cleared(tmp_path: Path) -> None:
    store = ChartStore(tmp_path)
    stale, fresh = store.tmp / "old.part", store.tmp / "new.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")  # another live process may be writing this one
    t = time.time() - 2 * cache_mod.STALE_TEMP
    os.utime(stale, (t, t))
    ChartStore(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_an_unusable_cache_directory_falls_back_to_a_temporary_one(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_bytes(b"not a directory")
    got = cache_mod.usable_cache_dir(blocked / "charts")
    try:
        assert got != blocked / "charts" and got.is_dir()
    finally:
        got.rmdir()
    assert cache_mod.usable_cache_dir(tmp_path / "ok") == tmp_path / "ok"
