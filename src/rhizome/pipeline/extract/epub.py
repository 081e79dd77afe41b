"""EPUB → markdown with the standard library, lxml and markdownify (no ebooklib: AGPL).

``META-INF/container.xml`` → the OPF package (title, creators, language…) → manifest +
spine → each XHTML document of the spine, in order, through markdownify with ATX headings.

Safety: the archive is only read, never unpacked to disk. Before reading anything we
reject archives with too many entries, an unsafe entry name (absolute, ``..``), a total
declared size or a compression ratio typical of zip bombs; every read is capped, so an
entry that lies about its size cannot inflate past the cap either.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from typing import Any
from urllib.parse import unquote, urlsplit

from lxml import etree  # type: ignore[import-untyped]

from rhizome.errors import InvalidInputError

from .base import Extracted, ProgressFn, tidy_title
from .markup import Converter, xhtml_to_markdown
from .text import first_heading

MAX_ENTRIES = 10_000
MAX_TOTAL_UNCOMPRESSED = 1024 * 1024 * 1024  # 1 GiB declared, all entries together
MAX_ENTRY_BYTES = 64 * 1024 * 1024  # one XHTML/OPF document we actually read
MAX_RATIO = 100  # uncompressed / compressed, for entries above RATIO_MIN_BYTES
RATIO_MIN_BYTES = 1024 * 1024

_XHTML_TYPES = {"application/xhtml+xml", "text/html", "application/xml", "text/xml"}
_BAD_HINT = "Check that the file is a complete, DRM-free EPUB (re-download or re-export it)."


def _invalid(message: str, hint: str = _BAD_HINT) -> InvalidInputError:
    return InvalidInputError(message, hint)


class _Entries(dict[str, zipfile.ZipInfo]):
    """The archive's entries by name, with a case-insensitive fallback lookup."""

    def __init__(self, infos: list[zipfile.ZipInfo]) -> None:
        super().__init__((info.filename, info) for info in infos)
        self.lowered = {info.filename.lower(): info for info in infos}

    def find(self, path: str) -> zipfile.ZipInfo | None:
        # tolerate case differences (EPUBs made on Windows/macOS)
        return self.get(path) or self.lowered.get(path.lower())


def _check_archive(zf: zipfile.ZipFile) -> _Entries:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _invalid(
            f"The EPUB has {len(infos)} files inside; the limit is {MAX_ENTRIES}. "
            "It is not a normal book (possibly a zip bomb)."
        )
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise _invalid(
                f"The EPUB contains an unsafe file path ({name!r}); it was rejected for safety.",
                "Only add EPUB files from sources you trust; re-export the book with an "
                "EPUB editor such as Calibre or Sigil.",
            )
        total += info.file_size
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(
            info.compress_size, 1
        ):
            ratio = info.file_size // max(info.compress_size, 1)
            raise _invalid(
                f"The EPUB contains a file ({name!r}) that expands {ratio} times when "
                "unpacked; this looks like a zip bomb and was rejected.",
                "Only add EPUB files from sources you trust.",
            )
    if total > MAX_TOTAL_UNCOMPRESSED:
        raise _invalid(
            f"The EPUB would unpack to {total // (1024 * 1024)} MB, more than the "
            f"{MAX_TOTAL_UNCOMPRESSED // (1024 * 1024)} MB limit (possibly a zip bomb).",
            "Only add EPUB files from sources you trust.",
        )
    return _Entries(infos)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read one entry, never more than MAX_ENTRY_BYTES whatever its header claims."""
    if info.file_size > MAX_ENTRY_BYTES:
        raise _invalid(
            f"The file {info.filename!r} inside the EPUB is too large "
            f"({info.file_size // (1024 * 1024)} MB)."
        )
    try:
        with zf.open(info) as fh:
            data = fh.read(MAX_ENTRY_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise _invalid(f"The EPUB is damaged: {info.filename!r} cannot be read ({exc}).") from None
    except Exception as exc:  # zlib.error and friends
        raise _invalid(f"The EPUB is damaged: {info.filename!r} cannot be read ({exc}).") from None
    if len(data) > MAX_ENTRY_BYTES:
        raise _invalid(f"The file {info.filename!r} inside the EPUB is too large.")
    return data


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _parse_xml(data: bytes, what: str) -> Any:
    try:
        # no entity expansion, no network: container/OPF files are untrusted input
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=False, recover=True
        )
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise _invalid(f"The EPUB's {what} is not valid XML ({exc}).") from None
    if root is None:
        raise _invalid(f"The EPUB's {what} is empty or not XML.")
    return root


def _opf_path(zf: zipfile.ZipFile, entries: _Entries) -> str:
    container = entries.find("META-INF/container.xml")
    if container is not None:
        root = _parse_xml(_read(zf, container), "META-INF/container.xml")
        for el in root.iter():
            if _local(el.tag) == "rootfile" and el.get("full-path"):
                return str(el.get("full-path"))
    opfs = sorted(name for name in entries if name.lower().endswith(".opf"))
    if opfs:
        return opfs[0]
    raise _invalid(
        "This is not a valid EPUB: it has no package document (META-INF/container.xml and "
        "the .opf file are missing)."
    )


def _resolve(base_dir: str, href: str) -> str | None:
    path = unquote(urlsplit(href).path)
    if not path:
        return None
    joined = posixpath.normpath(posixpath.join(base_dir, path))
    if joined.startswith("../") or joined == ".." or joined.startswith("/"):
        return None
    return joined


def _text(el: Any) -> str:
    return " ".join("".join(el.itertext()).split())


def _only_headings(markdown: str) -> bool:
    return all(line.startswith("#") or not line.strip() for line in markdown.split("\n"))


def extract_epub(data: bytes, *, progress: ProgressFn | None = None) -> Extracted:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _invalid(
            "This is not a valid EPUB: the file is not a ZIP archive or it is damaged "
            "(possibly cut off during download)."
        ) from None
    with zf:
        entries = _check_archive(zf)
        opf_path = _opf_path(zf, entries)
        opf_info = entries.find(opf_path)
        if opf_info is None:
            raise _invalid(
                f"This is not a valid EPUB: its package document {opf_path!r} is missing."
            )
        opf = _parse_xml(_read(zf, opf_info), "package document (.opf)")
        base_dir = posixpath.dirname(opf_info.filename)

        meta: dict[str, list[str]] = {}
        manifest: dict[str, tuple[str, str, str]] = {}  # id -> (href, media-type, properties)
        spine: list[tuple[str, bool]] = []  # (idref, linear)
        for el in opf.iter():
            name = _local(el.tag)
            parent = el.getparent()
            parent_name = _local(parent.tag) if parent is not None else ""
            if parent_name == "metadata" and name in (
                "title", "creator", "language", "publisher", "date", "identifier",
                "description", "subject", "rights", "contributor",
            ):  # fmt: skip
                value = _text(el)
                if value:
                    meta.setdefault(name, []).append(value)
            elif name == "item" and el.get("id") and el.get("href"):
                manifest[str(el.get("id"))] = (
                    str(el.get("href")),
                    str(el.get("media-type") or "").lower(),
                    str(el.get("properties") or ""),
                )
            elif name == "itemref" and el.get("idref"):
                spine.append((str(el.get("idref")), el.get("linear") != "no"))
        if not spine:
            raise _invalid(
                "This is not a valid EPUB: its package document lists no content (empty spine)."
            )

        documents: list[tuple[zipfile.ZipInfo, bool]] = []  # (entry, is the nav document)
        seen: set[str] = set()
        for idref, _linear in spine:
            item = manifest.get(idref)
            if item is None:
                continue
            href, media_type, properties = item
            if media_type and media_type not in _XHTML_TYPES:
                continue  # images or SVG pages in the spine
            path = _resolve(base_dir, href)
            if path is None:
                raise _invalid(
                    f"The EPUB refers to a file outside the book ({href!r}); it was rejected "
                    "for safety.",
                    "Only add EPUB files from sources you trust.",
                )
            info = entries.find(path)
            if info is None or path in seen:
                continue
            seen.add(path)
            documents.append((info, "nav" in properties.split()))
        if not documents:
            raise _invalid(
                "The EPUB has no readable chapters (its spine lists no XHTML documents)."
            )

        converter = Converter()
        parts: list[str] = []
        total = len(documents)
        for i, (info, is_nav) in enumerate(documents):
            md = xhtml_to_markdown(_read(zf, info), converter)
            # the navigation document without its <nav> lists is often just "Contents"
            if md and not (is_nav and _only_headings(md)):
                parts.append(md)
            if progress is not None:
                progress(i + 1, total)
    markdown = "\n\n".join(parts)
    if not markdown.strip():
        raise _invalid("The EPUB has no text (it may contain only images).", _BAD_HINT)
    title = tidy_title(meta["title"][0]) if meta.get("title") else None
    creators = [c for c in meta.get("creator", []) if c]
    metadata: dict[str, Any] = {
        "spine_documents": total,
        "opf_path": opf_info.filename,
    }
    for key in ("language", "publisher", "date", "identifier", "description", "rights"):
        if meta.get(key):
            metadata[key] = meta[key][0]
    if meta.get("subject"):
        metadata["subjects"] = meta["subject"]
    if len(creators) > 1:
        metadata["creators"] = creators
    return Extracted(
        markdown=markdown + "\n",
        title=title or first_heading(markdown),
        author=tidy_title(", ".join(creators)) if creators else None,
        source_type="epub",
        page_count=None,
        metadata=metadata,
    )
