"""Qt resource archives (.rcc), read without Qt: the photos of gcompris-qt-data are inside them.

Layout: header "qres", version, offsets of the node tree, the data block and the names block
(v3 adds a flags word). Tree nodes are 14 bytes (v1) or 22 bytes (v2+, an 8-byte mtime at the
end): name offset u32, flags u16, then for a directory child count u32 + index of the first child,
for a file country u16 + language u16 + data offset u32. A name is u16 length, u32 hash,
UTF-16BE text; a datum is u32 size then its bytes, which for zlib entries start with the u32
uncompressed size. All integers are big-endian.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ...errors import AlitError

RCC_COMPRESSED, RCC_DIRECTORY, RCC_COMPRESSED_ZSTD = 0x1, 0x2, 0x4


def read_rcc(path_or_bytes: str | Path | bytes, prefix: str = "") -> dict[str, bytes]:
    """Files of a Qt .rcc archive whose path starts with `prefix`, as {path: bytes} (decompressed).

    Paths have no leading slash, e.g. "gcompris/src/activities/erase/resource/apple.webp".
    """
    blob = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    where = "<bytes>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    try:
        magic, version, tree, data, names = struct.unpack_from(">4sIIII", blob, 0)
    except struct.error:
        raise AlitError(f"{where}: too short for a Qt resource archive") from None
    if magic != b"qres" or version not in (1, 2, 3):
        raise AlitError(f"{where}: not a Qt resource archive (magic {magic!r}, version {version})")
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # skip the length and the hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    def datum(offset: int, flags: int, path: str) -> bytes:
        (size,) = struct.unpack_from(">I", blob, data + offset)
        raw = blob[data + offset + 4:data + offset + 4 + size]
        if len(raw) != size:
            raise AlitError(f"{where}: {path} is cut short ({len(raw)} of {size} bytes)")
        if flags & RCC_COMPRESSED_ZSTD:
            raise AlitError(f"{where}: {path} is zstd-compressed, which this reader does not handle")
        if not flags & RCC_COMPRESSED:
            return raw
        (expected,) = struct.unpack_from(">I", raw, 0)
        out = zlib.decompress(raw[4:])
        if len(out) != expected:
            raise AlitError(f"{where}: {path} inflates to {len(out)} bytes, header says {expected}")
        return out

    files: dict[str, bytes] = {}
    stack = [(0, "")]  # (node index, path of that node); node 0 is the unnamed root
    try:
        while stack:
            index, path = stack.pop()
            at = tree + index * node_size
            name_offset, flags = struct.unpack_from(">IH", blob, at)
            if index:
                path = f"{path}/{name_at(name_offset)}" if path else name_at(name_offset)
            if flags & RCC_DIRECTORY:
                count, first = struct.unpack_from(">II", blob, at + 6)
                if path and not (path.startswith(prefix) or prefix.startswith(path + "/")):
                    continue  # nothing under this folder can match
                stack.extend((first + i, path) for i in range(count))
            elif path.startswith(prefix):
                (offset,) = struct.unpack_from(">I", blob, at + 10)
                files[path] = datum(offset, flags, path)
    except (struct.error, zlib.error, UnicodeDecodeError) as e:
        raise AlitError(f"{where}: corrupt Qt resource archive ({e})") from None
    return files
