"""Which kind of document do these bytes hold?

The bytes decide first (magic numbers), then the declared content type or file name
(for the text formats, which have no magic number), then sniffing. What is accepted, by
which names and MIME types, comes from the one table in :mod:`rhizome.pipeline.filetypes`;
ingest and the web upload call :func:`detect_type` too, so a file is refused the same way
everywhere.
"""

from __future__ import annotations

import io
import re
import zipfile

from rhizome.errors import InvalidInputError
from rhizome.pipeline.filetypes import SOURCE_TYPES, SUPPORTED_HINT, declared_type, refused_type

from .text import decode_text

SUPPORTED = SOURCE_TYPES
__all__ = ["SUPPORTED", "SUPPORTED_HINT", "detect_type"]

# (signature, offset, what it is) — formats people upload by mistake
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"WEBP", 8, "a WebP image"),
    (b"WAVE", 8, "a WAV audio file"),
    (b"AVI ", 8, "an AVI video"),
    (b"ftyp", 4, "a video, audio or HEIC image file"),
    (b"ID3", 0, "an MP3 audio file"),
    (b"OggS", 0, "an Ogg audio/video file"),
    (b"fLaC", 0, "a FLAC audio file"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"\x7fELF", 0, "a program (ELF executable)"),
    (b"\xca\xfe\xba\xbe", 0, "a program (Mach-O or Java class file)"),
    (b"\xcf\xfa\xed\xfe", 0, "a program (Mach-O executable)"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"BZh", 0, "a bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "an old Microsoft Office document (.doc/.xls/.ppt)"),
    (b"SQLite format 3\x00", 0, "an SQLite database"),
    (b"{\\rtf", 0, "an RTF document"),
    (b"%!PS", 0, "a PostScript file"),
    (b"AT&TFORM", 0, "a DjVu document"),
    (b"\x00asm", 0, "a WebAssembly program"),
)

_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_HTML_TAGS = re.compile(rb"<(?:html|head|body|title|meta|div|p|article)[\s>/]", re.IGNORECASE)
_MARKDOWN_HINTS = re.compile(
    r"^(?:#{1,6} \S|```|~~~|[-*+] \S|\d+\. \S|> \S)|\[[^\]\n]+\]\([^)\s]+\)|\*\*[^*\n]+\*\*",
    re.MULTILINE,
)


def _declared(filename: str | None, content_type: str | None) -> str | None:
    found = declared_type(filename, content_type)
    return found.source_type if found else None


def _zip_kind(data: bytes) -> str:
    """'epub' for an EPUB, else raise with a message naming what the archive is."""
    if data[30:58] == b"mimetypeapplication/epub+zip":
        return "epub"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist()[:10000])
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidInputError(
            "The file looks like a ZIP archive but it is damaged.",
            "Download or export the file again, then add it again.",
        ) from None
    if "META-INF/container.xml" in names or any(n.lower().endswith(".opf") for n in names):
        return "epub"
    if "word/document.xml" in names:
        what = "a Word document (.docx)"
    elif "xl/workbook.xml" in names:
        what = "an Excel workbook (.xlsx)"
    elif "ppt/presentation.xml" in names:
        what = "a PowerPoint presentation (.pptx)"
    elif "content.xml" in names and "mimetype" in names:
        what = "an OpenDocument file (.odt/.ods/.odp)"
    else:
        what = "a ZIP archive"
    raise InvalidInputError(
        f"This file is {what}, which Rhizome cannot read.",
        f"{SUPPORTED_HINT} Export or save it as PDF or EPUB first.",
    )


def _decode_sample(sample: bytes) -> str:
    """Decode the first bytes of a file; a UTF-8 sequence cut at the end is not an error."""
    try:
        return sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data":
            return sample[: exc.start].decode("utf-8", errors="replace")
    return decode_text(sample)[0]


def _binary_reason(sample: bytes) -> str | None:
    """Why ``sample`` is not text, or ``None`` when it reads as text."""
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if sample.startswith(bom):
            return None
    if b"\x00" in sample:
        return "it contains binary data"
    text = _decode_sample(sample)
    if not text:
        return None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\x1b")
    # latin-1/cp1252 control block and unassigned cp1252 bytes also betray binary data
    controls += sum(1 for ch in text if 0x80 <= ord(ch) < 0xA0)
    if controls > max(2, len(text) // 100):
        return "it contains binary data"
    return None


def detect_type(data: bytes, filename: str | None = None, content_type: str | None = None) -> str:
    """Return ``"pdf"``, ``"epub"``, ``"html"``, ``"markdown"`` or ``"text"``.

    Raises :class:`InvalidInputError` for an empty file, a known unsupported format
    (images, archives, Office files, programs…) and binary junk. The bytes win over the
    declared type: a PNG named ``notes.md`` is rejected, a PDF served as
    ``application/octet-stream`` is a PDF.
    """
    if not data:
        raise InvalidInputError(
            "The file is empty (0 bytes).",
            "Check that the file was saved or downloaded completely, then add it again.",
        )
    declared = _declared(filename, content_type)
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    for sig, offset, what in _SIGNATURES:
        if data[offset : offset + len(sig)] == sig:
            raise InvalidInputError(
                f"This file is {what}, not a document Rhizome can read.", SUPPORTED_HINT
            )
    refused = refused_type(filename, content_type)
    if refused is not None:
        raise InvalidInputError(
            f"This file is {refused}, not a document Rhizome can read.", SUPPORTED_HINT
        )
    sample = data[:65536]
    reason = _binary_reason(sample)
    if reason is not None and data.startswith(b"MZ"):
        reason = "it is a program (Windows executable)"
    if reason is not None:
        if declared in ("pdf", "epub"):
            raise InvalidInputError(
                f"The file is declared as {declared.upper()} but is not a valid "
                f"{declared.upper()} file ({reason}); it may be damaged.",
                "Download or export the file again, then add it again.",
            )
        raise InvalidInputError(
            f"This file is not a document Rhizome can read: {reason}.", SUPPORTED_HINT
        )
    # text from here on
    looks_html = bool(_HTML_START.match(sample)) or len(_HTML_TAGS.findall(sample[:8192])) >= 3
    if declared in ("html", "markdown", "text"):
        if declared == "text" and looks_html and _HTML_START.match(sample):
            return "html"
        return declared
    if declared in ("pdf", "epub") and not looks_html:
        raise InvalidInputError(
            f"The file is declared as {declared.upper()} but is not a valid "
            f"{declared.upper()} file (it contains plain text); it may be damaged.",
            "Download or export the file again, then add it again.",
        )
    if looks_html:
        return "html"
    text = _decode_sample(sample)
    if len(_MARKDOWN_HINTS.findall(text)) >= 2:
        return "markdown"
    return "text"
