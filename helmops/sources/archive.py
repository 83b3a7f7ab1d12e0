"""Check a chart archive before helm (or anything else) unpacks it.

helm loads a whole chart into memory, so a gzip bomb handed to it grows helm to gigabytes.  Every archive
is therefore read once here, streamed through gzip and tar, and rejected the moment it passes a limit: the
total unpacked size, one file's size, the number of entries, or the ratio of unpacked to packed bytes (a
bomb's signature).  Entries that a chart never needs and that an unpacker could be tricked by are refused
too: absolute paths, ``..``, links and device files.  The pass never holds more than one 64 KiB block, so a
bomb costs CPU up to the first limit and no memory.

The same pass reads the top-level ``Chart.yaml`` (name, version), which tarball sources need anyway.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import InvalidChart, LimitExceeded
from .limits import MIB, SourceLimits

__all__ = ["ArchiveInfo", "check_chart_archive"]

_Loader: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
#: the ratio guard starts once this much has been unpacked: small text files compress very well.
_RATIO_FLOOR = 1 * MIB
_CHART_YAML_MAX = 1 * MIB


@dataclass(frozen=True)
class ArchiveInfo:
    name: str | None  # from the top-level Chart.yaml, when it has one
    version: str | None
    files: int
    uncompressed: int


class _Counted(io.RawIOBase):
    """The decompressed stream, counting bytes and enforcing the total and the ratio limits as it goes."""

    def __init__(self, inner: IO[bytes], compressed: int, limits: SourceLimits, where: str) -> None:
        self.inner = inner
        self.compressed = max(compressed, 1)
        self.limits = limits
        self.where = where
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b)
        data = self.inner.read(min(len(view), 1 << 16))
        n = len(data)
        view[:n] = data
        self.total += n
        lim = self.limits
        if self.total > lim.max_chart_uncompressed:
            raise LimitExceeded(
                f"chart archive {self.where} exceeds {lim.mib('max_chart_uncompressed')} uncompressed"
            )
        if self.total > _RATIO_FLOOR and self.total > self.compressed * lim.max_chart_ratio:
            raise LimitExceeded(
                f"chart archive {self.where} expands more than {lim.max_chart_ratio}x"
                f" ({self.compressed} bytes compressed): refusing a likely gzip bomb"
            )
        return n


def _bad_name(name: str) -> str | None:
    if not name:
        return "an empty entry name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"an absolute path ({name[:80]!r})"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"a '..' path ({name[:80]!r})"
    if "\x00" in name:
        return "a NUL byte in an entry name"
    return None


def check_chart_archive(source: Path | bytes, where: str, limits: SourceLimits | None = None) -> ArchiveInfo:
    """Blocking (run it in a thread).  Raises :class:`LimitExceeded` or :class:`InvalidChart`.

    ``where`` names the archive for users (a display URL or ``oci://…@sha256:…``), never a local path.
    """
    lim = limits or SourceLimits()
    if isinstance(source, bytes | bytearray):
        compressed = len(source)
        raw: IO[bytes] = io.BytesIO(source)
    else:
        compressed = os.stat(source).st_size
        raw = open(source, "rb")  # noqa: SIM115 - closed below
    if compressed > lim.max_chart_bytes:
        raw.close()
        raise LimitExceeded(f"chart archive {where} exceeds the {lim.mib('max_chart_bytes')} limit")
    name = version = None
    files = 0
    try:
        with raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            counted = _Counted(gz, compressed, lim, where)  # type: ignore[arg-type]  # GzipFile reads bytes
            stream = io.BufferedReader(counted, buffer_size=1 << 16)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    files += 1
                    if files > lim.max_chart_files:
                        raise LimitExceeded(
                            f"chart archive {where} has more than {lim.max_chart_files} entries"
                        )
                    bad = _bad_name(member.name)
                    if bad is not None:
                        raise InvalidChart(f"chart archive {where} has {bad}")
                    if member.issym() or member.islnk():
                        raise InvalidChart(f"chart archive {where} has a link ({member.name[:80]!r})")
                    if not (member.isfile() or member.isdir()):
                        raise InvalidChart(
                            f"chart archive {where} has a device, FIFO or other special file ({member.name[:80]!r})"
                        )
                    if member.size > lim.max_chart_file:
                        raise LimitExceeded(
                            f"chart archive {where}: file {member.name[:80]!r} exceeds the"
                            f" {lim.mib('max_chart_file')} per-file limit"
                        )
                    parts = member.name.lstrip("./").split("/")
                    if member.isfile() and len(parts) == 2 and parts[1] == "Chart.yaml" and version is None:
                        f = tar.extractfile(member)
                        if f is not None and member.size <= _CHART_YAML_MAX:
                            name, version = _chart_meta(f.read(), parts[0])
            total = counted.total
    except (LimitExceeded, InvalidChart):
        raise
    except RecursionError:
        raise InvalidChart(f"{where} is not a helm chart archive (Chart.yaml nested too deeply)") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError):
        raise InvalidChart(f"{where} is not a helm chart archive (.tgz)") from None
    return ArchiveInfo(name=name, version=version, files=files, uncompressed=total)


def _chart_meta(data: bytes, dirname: str) -> tuple[str | None, str | None]:
    """(name, version) from Chart.yaml; aliases are refused (a 1 MiB Chart.yaml has no use for them)."""
    try:
        for event in yaml.parse(data, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                return None, None
        meta = yaml.load(data, Loader=_Loader)
    except yaml.YAMLError:
        return None, None
    if isinstance(meta, dict) and isinstance(meta.get("version"), str):
        return str(meta.get("name") or dirname), meta["version"]
    return None, None
