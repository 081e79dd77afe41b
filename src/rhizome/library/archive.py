"""ZIP mechanics of export and import, streamed: nothing here holds an archive (or a whole
file of it) in memory.

* :func:`check_zip` refuses what an export never contains and what would hurt the machine
  reading it: entries with ``..``, absolute paths or links, encrypted entries, duplicate
  names, too many entries, too many bytes once inflated, and zip bombs (a compression
  ratio no real document has).
* :class:`PartWriter` writes one document's files into a small ZIP of its own (a *part*),
  hashing each file as it streams through.
* :func:`join_parts` streams finished parts into one archive: their entries are copied
  byte for byte (not compressed again) and one central directory lists them all.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, BinaryIO

from rhizome.errors import InvalidInputError

COPY_BUFFER = 1024 * 1024
STORED_SUFFIXES = frozenset(
    {".pdf", ".epub", ".zip", ".gz", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".docx", ".f32"}
)
"""Already compressed (or incompressible) files are stored, not deflated again."""
ZIP64_FILE = 1 << 31
COMPRESS_LEVEL = 1
"""Deflate level of text and JSON: level 1 is about three times faster than the default 6
for an archive a few percent larger (most bytes are sources and vectors, stored as is)."""


@dataclass(frozen=True)
class ZipLimits:
    """Caps on an archive to import (a zip bomb or a hostile archive is ``invalid``)."""

    max_entries: int = 100_000
    max_total_bytes: int = 50 * 1024**3
    max_entry_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0
    """An entry inflating to more than this many times its compressed size (and more
    than ``ratio_floor`` bytes) is a bomb; real documents stay far below."""
    ratio_floor: int = 1024 * 1024


BAD_ZIP_HINT = "Use a ZIP made by `rhizome export` (or the Export page), unmodified."


def _invalid(message: str) -> InvalidInputError:
    return InvalidInputError(message, BAD_ZIP_HINT)


def safe_name(name: str) -> str:
    """``name`` if it is a relative path without ``..``, else InvalidInputError."""
    if not name or "\x00" in name or "\\" in name:
        raise _invalid(f"The archive has an entry with an unsafe name: {name!r}.")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _invalid(f"The archive has an entry with an absolute path: {name!r}.")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _invalid(f"The archive has an entry that leaves its folder: {name!r}.")
    return name


def is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def open_zip(fileobj: IO[bytes]) -> zipfile.ZipFile:
    """Open an archive for reading; a truncated or non-ZIP file is ``invalid``."""
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(
            f"The file is not a readable ZIP archive ({exc}).",
            "It may be truncated or not a ZIP at all: export the library again.",
        ) from None


def check_zip(zf: zipfile.ZipFile, limits: ZipLimits | None = None) -> list[zipfile.ZipInfo]:
    """The archive's file entries (directories left out), after every safety check."""
    limits = limits or ZipLimits()
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _invalid(
            f"The archive has {len(infos):,} entries; at most {limits.max_entries:,} are accepted."
        )
    seen: set[str] = set()
    total = 0
    files: list[zipfile.ZipInfo] = []
    for info in infos:
        name = safe_name(info.filename)
        if is_link(info):
            raise _invalid(f"The archive has a symbolic link: {name!r}.")
        if info.flag_bits & 0x1:
            raise _invalid(f"The archive has an encrypted entry: {name!r}.")
        if name in seen:
            raise _invalid(f"The archive has the entry {name!r} twice.")
        seen.add(name)
        if info.is_dir():
            continue
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _invalid(f"The entry {name!r} uses a compression method exports never use.")
        size = info.file_size
        if size > limits.max_entry_bytes:
            raise _invalid(f"The entry {name!r} inflates to {size:,} bytes; too large.")
        if size > limits.ratio_floor and size > limits.max_ratio * max(info.compress_size, 1):
            raise _invalid(
                f"The entry {name!r} inflates {size / max(info.compress_size, 1):,.0f} times "
                "(a zip bomb)."
            )
        total += size
        if total > limits.max_total_bytes:
            raise _invalid(
                f"The archive inflates to more than {limits.max_total_bytes:,} bytes; too large."
            )
        files.append(info)
    return files


def copy_hashed(src: IO[bytes], dst: IO[bytes]) -> tuple[int, str]:
    """Copy ``src`` to ``dst`` in buffers; returns (bytes, SHA-256)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        block = src.read(COPY_BUFFER)
        if not block:
            break
        digest.update(block)
        dst.write(block)
        size += len(block)
    return size, digest.hexdigest()


def hash_stream(src: IO[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while True:
        block = src.read(COPY_BUFFER)
        if not block:
            break
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def _entry(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, time.gmtime()[:6])
    suffix = PurePosixPath(name).suffix.lower()
    info.compress_type = zipfile.ZIP_STORED if suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.create_system = 3
    if info.compress_type == zipfile.ZIP_DEFLATED and size < 64:
        info.compress_type = zipfile.ZIP_STORED
    # the entry's own level (ZipFile's compresslevel only applies to entries named by str);
    # the attribute is public from Python 3.13 and private before
    setattr(
        info, "compress_level" if sys.version_info >= (3, 13) else "_compresslevel", COMPRESS_LEVEL
    )
    return info


class PartWriter:
    """One document's files into a ZIP on disk; every file hashed as it streams in."""

    def __init__(self, path: str) -> None:
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)
        self.files: dict[str, tuple[int, str]] = {}

    def add_stream(self, name: str, src: BinaryIO) -> tuple[int, str]:
        src.seek(0, 2)
        size = src.tell()
        src.seek(0)
        info = _entry(safe_name(name), size)
        with self.zip.open(info, "w", force_zip64=size >= ZIP64_FILE) as dst:
            written = copy_hashed(src, dst)
        self.files[name] = written
        return written

    def add_bytes(self, name: str, data: bytes) -> tuple[int, str]:
        info = _entry(safe_name(name), len(data))
        self.zip.writestr(info, data)
        written = (len(data), hashlib.sha256(data).hexdigest())
        self.files[name] = written
        return written

    def close(self) -> None:
        self.zip.close()


def join_parts(
    parts: Iterable[BinaryIO], out: BinaryIO, extra: Iterable[tuple[str, bytes]] = ()
) -> int:
    """Stream the parts (ZIPs from :class:`PartWriter`) into ``out`` as one archive, then
    add the ``extra`` files (e.g. the top-level manifest). Returns the number of entries."""
    infos: list[zipfile.ZipInfo] = []
    for part in parts:
        with zipfile.ZipFile(part) as pz:
            shift = out.tell()
            end = pz.start_dir  # where the part's central directory starts
            part.seek(0)
            left = end
            while left > 0:
                block = part.read(min(COPY_BUFFER, left))
                if not block:
                    raise OSError("a part of the export ended early")
                out.write(block)
                left -= len(block)
            for info in pz.infolist():
                info.header_offset += shift
                infos.append(info)
    zf = zipfile.ZipFile(out, "w", allowZip64=True)  # its central directory goes at the end
    for name, data in extra:
        zf.writestr(_entry(name, len(data)), data)
    zf.filelist[0:0] = infos
    for info in infos:
        zf.NameToInfo[info.filename] = info
    zf.close()
    return len(zf.filelist)


def copy_file(src: IO[bytes], dst: IO[bytes]) -> None:
    shutil.copyfileobj(src, dst, COPY_BUFFER)
