"""The file types Rhizome reads: the one table that ingest (``rhizome add``, the web
upload), the web upload check and extraction (:func:`rhizome.pipeline.extract.detect_type`)
all use, so that a file is accepted or refused the same way everywhere.

Each accepted type has its source type (what the extractor produces it from), a label,
its file name extensions and its MIME types. A second, smaller table names the formats
people often try by mistake (spreadsheets, images, office files, archives...) so that they
are refused up front with a message that says what they are, even when their bytes would
pass for text (a CSV file). The bytes themselves are sniffed by ``extract.detect``.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class FileType:
    source_type: str
    """``pdf``, ``epub``, ``html``, ``markdown`` or ``text``."""
    label: str
    extensions: tuple[str, ...]
    """Lower-case, with the dot; the first is the one a stored source file gets."""
    mime_types: tuple[str, ...]


FILE_TYPES: tuple[FileType, ...] = (
    FileType("pdf", "PDF", (".pdf",), ("application/pdf", "application/x-pdf")),
    FileType("epub", "EPUB", (".epub",), ("application/epub+zip",)),
    FileType("html", "HTML", (".html", ".htm", ".xhtml"), ("text/html", "application/xhtml+xml")),
    FileType(
        "markdown",
        "Markdown",
        (".md", ".markdown", ".mdown", ".mkd"),
        ("text/markdown", "text/x-markdown"),
    ),
    FileType("text", "plain text", (".txt", ".text"), ("text/plain",)),
)
"""Every file type Rhizome accepts."""

SOURCE_TYPES: tuple[str, ...] = tuple(t.source_type for t in FILE_TYPES)
ACCEPTED_LIST = "PDF, EPUB, HTML, Markdown or plain-text"
SUPPORTED_HINT = "Rhizome reads PDF, EPUB, HTML, Markdown and plain-text files."


@dataclass(frozen=True)
class RefusedType:
    what: str
    """What such a file is, as in "This file is <what>"."""
    extensions: tuple[str, ...]
    mime_types: tuple[str, ...] = ()
    mime_prefixes: tuple[str, ...] = ()


REFUSED_TYPES: tuple[RefusedType, ...] = (
    RefusedType("a CSV spreadsheet", (".csv",), ("text/csv", "application/csv")),
    RefusedType("a TSV spreadsheet", (".tsv",), ("text/tab-separated-values",)),
    RefusedType(
        "a spreadsheet",
        (".xls", ".xlsx", ".ods", ".numbers"),
        (
            "application/vnd.ms-excel",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.oasis.opendocument.spreadsheet",
        ),
    ),
    RefusedType(
        "a word-processor document",
        (".doc", ".docx", ".odt", ".rtf", ".pages"),
        (
            "application/msword",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.oasis.opendocument.text",
            "application/rtf",
            "text/rtf",
        ),
    ),
    RefusedType(
        "a presentation",
        (".ppt", ".pptx", ".odp", ".key"),
        (
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.presentation",
        ),
    ),
    RefusedType(
        "an image",
        (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".svg"),
        mime_prefixes=("image/",),
    ),
    RefusedType(
        "an audio file",
        (".mp3", ".wav", ".flac", ".ogg", ".m4a", ".aac"),
        mime_prefixes=("audio/",),
    ),
    RefusedType("a video", (".mp4", ".mov", ".mkv", ".avi", ".webm"), mime_prefixes=("video/",)),
    RefusedType(
        "an archive",
        (".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar"),
        (
            "application/zip",
            "application/gzip",
            "application/x-tar",
            "application/x-7z-compressed",
            "application/vnd.rar",
        ),
    ),
    RefusedType("a program", (".exe", ".dll", ".msi", ".dmg", ".apk")),
)
"""Formats refused by name or declared MIME type (unless their bytes are a PDF or an
EPUB: the bytes win)."""

_BY_EXTENSION = {ext: t for t in FILE_TYPES for ext in t.extensions}
_BY_MIME = {mime: t for t in FILE_TYPES for mime in t.mime_types}


def extension_of(filename: str | None) -> str:
    """The lower-case extension with its dot (``""`` for none)."""
    if not filename:
        return ""
    return posixpath.splitext(filename.replace("\\", "/").lower())[1]


def mime_of(content_type: str | None) -> str:
    """The bare, lower-case MIME type of a Content-Type value (``""`` for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def by_source_type(source_type: str) -> FileType:
    for t in FILE_TYPES:
        if t.source_type == source_type:
            return t
    raise KeyError(source_type)


def by_extension(filename: str | None) -> FileType | None:
    return _BY_EXTENSION.get(extension_of(filename))


def by_mime(content_type: str | None) -> FileType | None:
    return _BY_MIME.get(mime_of(content_type))


def declared_type(filename: str | None, content_type: str | None) -> FileType | None:
    """The accepted type a file claims to be: its content type first, then its name."""
    return by_mime(content_type) or by_extension(filename)


def refused_type(filename: str | None, content_type: str | None) -> str | None:
    """A description of what the file is when its name or MIME type is a format Rhizome
    refuses (e.g. ``"a CSV spreadsheet (.csv)"``), else None."""
    ext = extension_of(filename)
    mime = mime_of(content_type)
    for t in REFUSED_TYPES:
        if ext and ext in t.extensions:
            return f"{t.what} ({ext})"
        if mime and (mime in t.mime_types or mime.startswith(t.mime_prefixes)):
            return f"{t.what} ({mime})"
    return None


def stored_extension(source_type: str, filename: str | None) -> str:
    """The extension a stored source file gets: the file's own when it is one of its
    type's, else the type's first."""
    t = by_source_type(source_type)
    ext = extension_of(filename)
    return ext if ext in t.extensions else t.extensions[0]
