"""Undo a Content-Encoding without ever holding more than a limit of output.

``zlib``'s ``max_length`` lets us decompress a response chunk by chunk and stop the moment the output
passes the limit, so a few KiB of gzip that would expand to gigabytes cost at most the limit.
"""

from __future__ import annotations

import zlib

from .errors import LimitExceeded, SourceError

__all__ = ["BoundedBuffer", "decoder_for"]


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
        self._buf = bytearray()
        self._z = decoder_for(encoding, what)

    def _too_large(self, limit: int, how: str) -> LimitExceeded:
        return LimitExceeded(f"{self.what} exceeds the {limit / (1 << 20):g} MiB limit{how}")

    def feed(self, chunk: bytes) -> None:
        self.wire += len(chunk)
        if self.wire > self.wire_cap:
            raise self._too_large(self.wire_cap, "")
        if self._z is None:
            self._buf += chunk
        else:
            data = chunk
            while data:
                room = self.cap - len(self._buf) + 1
                try:
                    out = self._z.decompress(data, room)
                except zlib.error:
                    raise SourceError(f"{self.what}: the compressed response is corrupt") from None
                self._buf += out
                if len(self._buf) > self.cap:
                    raise self._too_large(self.cap, " once decompressed")
                data = self._z.unconsumed_tail
        if len(self._buf) > self.cap:
            raise self._too_large(self.cap, "")

    def finish(self) -> bytes:
        if self._z is not None:
            self._buf += self._z.flush(self.cap - len(self._buf) + 1)
            if len(self._buf) > self.cap:
                raise self._too_large(self.cap, " once decompressed")
        return bytes(self._buf)


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
