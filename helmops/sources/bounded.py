"""Undo a Content-Encoding without ever holding more than a limit of output.

``zlib``'s ``max_length`` lets us decompress a response chunk by chunk and stop the moment the output
passes the limit, so a few KiB of gzip that would expand to gigabytes cost at most the limit.
"""

from __future__ import annotations

import zlib

from .errors import LimitExceeded, SourceError

__all__ = ["BoundedBuffer", "decoder_for"]

_STEP = 1 << 20


class BoundedBuffer:
    """Collects a body, decoding ``gzip``/``deflate`` as it arrives; raises :class:`LimitExceeded` past ``cap``.

    ``wire_cap`` bounds the bytes as sent, ``cap`` the bytes after decoding; ``what`` names the object in
    the error (e.g. ``"chart repository index https://…/index.yaml"``).
    """

    def __init__(self, encoding: str | None, *, cap: int, wire_cap: int, what: str) -> None:
        self.cap = cap
        self.wire_cap = wire_cap
        self.what = what
        self.wire = 0
        self.size = 0
        # Chunks, not one growing bytearray: growing by reallocation needs twice the limit at the end.
        self._chunks: list[bytes] = []
        self._z = decoder_for(encoding, what)

    def clear(self) -> None:
        """Drop what was collected (an exception's traceback must not keep the limit's worth alive)."""
        self._chunks.clear()
        self.size = 0

    def _too_large(self, limit: int, how: str) -> LimitExceeded:
        self.clear()
        return LimitExceeded(f"{self.what} exceeds the {limit / (1 << 20):g} MiB limit{how}")

    def _add(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self.size += len(data)

    def feed(self, chunk: bytes) -> None:
        self.wire += len(chunk)
        if self.wire > self.wire_cap:
            raise self._too_large(self.wire_cap, "")
        if self._z is None:
            self._add(chunk)
            if self.size > self.cap:
                raise self._too_large(self.cap, "")
            return
        data = chunk
        while True:
            try:
                # At most 1 MiB per call: one huge output buffer would be grown (and copied) by zlib.
                out = self._z.decompress(data, min(self.cap - self.size + 1, _STEP))
            except zlib.error:
                self.clear()
                raise SourceError(f"{self.what}: the compressed response is corrupt") from None
            self._add(out)
            if self.size > self.cap:
                raise self._too_large(self.cap, " once decompressed")
            data = self._z.unconsumed_tail
            if self._z.eof or (not data and not out):  # an empty input drains output zlib still holds
                break

    def finish(self) -> bytes:
        if self._z is not None:
            self._add(self._z.flush(self.cap - self.size + 1))
            if self.size > self.cap:
                raise self._too_large(self.cap, " once decompressed")
        body = b"".join(self._chunks)
        self.clear()
        return body


def decoder_for(encoding: str | None, what: str) -> zlib._Decompress | None:
    """A streaming decoder for an HTTP Content-Encoding (None for identity)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj()
    raise SourceError(f"{what}: unsupported Content-Encoding {enc!r}")
