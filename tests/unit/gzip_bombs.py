"""Gzip bombs for the unit tests of bounded decoders (release records, chart archives, indexes)."""

from __future__ import annotations

import struct
import zlib


def gzip_repeated(*parts: tuple[bytes, int]) -> bytes:
    """One gzip member of each ``(data, times)`` part repeated ``times`` times.

    Each part is compressed once into self-contained deflate blocks (a full flush) whose bytes are repeated:
    a bomb of hundreds of MiB costs milliseconds, not the seconds zlib needs to compress it.
    """
    body, crc, size = bytearray(), 0, 0
    for data, times in parts:
        z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        body += (z.compress(data) + z.flush(zlib.Z_FULL_FLUSH)) * times
        for _ in range(times):
            crc = zlib.crc32(data, crc)
        size += len(data) * times
    last = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # the final, empty block
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + last + struct.pack("<II", crc, size % 2**32)
