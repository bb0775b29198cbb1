"""The bridge's wire format: one message = ::

    uint32 big-endian N | N bytes of UTF-8 JSON header | raw array buffers, in header order

The JSON header is a dict; its key ``"_arrays"`` lists ``[name, dtype, shape]`` for the buffers that
follow (C order). Only JSON and raw numeric bytes cross the boundary: no pickle, so neither side
executes anything the other sends, and numpy versions need not match. Both sides import this module
(the child in a benchmark's own venv), so it needs only the standard library and numpy.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO, Optional

import numpy as np

WIRE_VERSION = 1
HEADER_LEN = struct.Struct(">I")
MAX_HEADER = 64 << 20


def encode(meta: dict, arrays: Optional[dict[str, np.ndarray]] = None) -> bytes:
    arrays = arrays or {}
    specs, bufs = [], []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object")
        specs.append([name, a.dtype.str, list(a.shape)])
        bufs.append(a.tobytes())
    head = json.dumps({**meta, "_arrays": specs}, separators=(",", ":"), default=_json_default).encode()
    return b"".join([HEADER_LEN.pack(len(head)), head, *bufs])


def decode_header(head: bytes) -> tuple[dict, list[tuple[str, np.dtype, tuple[int, ...], int]]]:
    meta = json.loads(head.decode())
    specs = []
    for name, dtype, shape in meta.pop("_arrays", []):
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise ValueError(f"array {name!r}: object dtype refused")
        shape = tuple(int(s) for s in shape)
        specs.append((name, dt, shape, int(np.prod(shape, dtype=np.int64)) * dt.itemsize))
    return meta, specs


def read_message(f: BinaryIO) -> Optional[tuple[dict, dict[str, np.ndarray]]]:
    """Blocking read of one message; None on a clean EOF before a message starts."""
    raw = f.read(HEADER_LEN.size)
    if not raw:
        return None
    if len(raw) < HEADER_LEN.size:
        raise EOFError("truncated message length")
    (n,) = HEADER_LEN.unpack(raw)
    if n > MAX_HEADER:
        raise ValueError(f"header of {n} bytes refused")
    head = _read_exact(f, n)
    meta, specs = decode_header(head)
    arrays = {name: np.frombuffer(_read_exact(f, nbytes), dtype=dt).reshape(shape).copy()
              for name, dt, shape, nbytes in specs}
    return meta, arrays


def _read_exact(f: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
