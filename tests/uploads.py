"""Small real files for upload tests: valid leading bytes of each accepted type."""

from __future__ import annotations

import struct
import zlib


def png(
    width: int = 2, height: int = 2, colors: tuple = ((31, 111, 235), (255, 255, 255))
) -> bytes:
    """A real PNG: a horizontal gradient between two colors."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    (r1, g1, b1), (r2, g2, b2) = colors
    rows = bytearray()
    for _y in range(height):
        rows.append(0)
        for x in range(width):
            t = x / max(1, width - 1)
            rows += bytes(
                (round(r1 + (r2 - r1) * t), round(g1 + (g2 - g1) * t), round(b1 + (b2 - b1) * t))
            )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


PNG = png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 16
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
WEBP = (
    b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00"
    b"\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
# An empty ZIP archive (the end-of-central-directory record alone).
ZIP = b"PK\x05\x06" + b"\x00" * 18
