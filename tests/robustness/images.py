"""Picture files for the robustness tests, written byte by byte (no image library decides what they contain)."""

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(path: Path, pixels: np.ndarray) -> Path:
    """A PNG of ``pixels``: (H, W) gray or (H, W, 3) RGB, uint8 or uint16 (16-bit samples, big-endian)."""
    h, w = pixels.shape[:2]
    depth = 16 if pixels.dtype == np.uint16 else 8
    color = 2 if pixels.ndim == 3 else 0
    samples = pixels.astype(">u2" if depth == 16 else "u1").reshape(h, -1).tobytes()
    row = len(samples) // h
    raw = b"".join(b"\x00" + samples[i * row:(i + 1) * row] for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) +
                     _chunk(b"IEND", b""))
    return path


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes whose header declares ``width`` x ``height`` gray pixels (all zero once inflated)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(min(height, 64))) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path
