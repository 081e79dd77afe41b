"""Library portability: the export format, one document written out, an import source
read and validated, the conflict report, the import strategies, and the storage scan.

The export ZIP (format ``rhizome-export`` 1.0)::

    manifest.json                  format, version, export date, one entry per document
    {document_id}/source.pdf       every file of the document's storage folder, byte for byte
    {document_id}/content.md
    {document_id}/chunks.json      {"version": "1.0", "chunks": [...]}, from the database
    {document_id}/metadata.json
    {document_id}/manifest.json
    {document_id}/embeddings.f32   the chunks' vectors, little-endian float32, one row per
                                   chunk in chunks.json order (NaN rows: none)
    {document_id}/highlights.json  (unless turned off)
    {document_id}/connections.json (unless turned off)

Every JSON file is read into a typed model that keeps unknown fields. The handlers
``export_documents`` and ``import_document`` call these functions stage by stage.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rhizome.errors import InvalidInputError
from rhizome.jobs.context import is_checkpoint_key
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries
from rhizome.library.archive import (
    PartWriter,
    ZipLimits,
    check_zip,
    hash_stream,
    open_zip,
    safe_name,
)
from rhizome.library.connections import reattach_decisions, remember_decisions
from rhizome.library.highlights import Highlight, dumps, locate, spanned_chunks
from rhizome.library.model import (
    ENRICHMENT_FIELDS,
    Chunk,
    Document,
    encode_vector,
    legacy_embedding_model,
)
from rhizome.library.repo import DocumentNotFoundError, Library, document_folder
from rhizome.storage import Storage

FORMAT = "rhizome-export"
FORMAT_VERSION = "1.0"
CHUNKS_VERSION = "1.0"
EMBEDDINGS_FILE = "embeddings.f32"
HIGHLIGHTS_FILE = "highlights.json"
CONNECTIONS_FILE = "connections.json"
CHUNKS_FILE = "chunks.json"
METADATA_FILE = "metadata.json"
CONTENT_FILE = "content.md"
DATABASE_FILES = frozenset({EMBEDDINGS_FILE, HIGHLIGHTS_FILE, CONNECTIONS_FILE})
"""Files an export adds from the database; an import puts them back in the database, not
in the document's storage folder."""
MAX_JSON_BYTES = 512 * 1024 * 1024
SAMPLES = 3
Strategy = Literal["skip", "replace", "merge_smart"]
STRATEGIES: tuple[Strategy, ...] = ("skip", "replace", "merge_smart")
STRATEGY_HELP = {
    "merge_smart": "Keep your chunks (ids, text, offsets, embeddings), highlights and "
    "validated connections; update only the enrichment fields (themes, importance, summary, "
    "concepts, polarity, domain) matched by chunk index, and add missing highlights and "
    "connections. Nothing is deleted.",
    "replace": "Destructive: the document's chunks become exactly the imported ones (their ids "
    "are kept, so highlights and connections of surviving chunks stay); connections of "
    "removed chunks are dropped.",
    "skip": "Leave the document as it is; only documents without a conflict are imported.",
}


# --- the format: typed models (unknown fields kept) ----------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None


class FileEntry(_Open):
    name: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class EmbeddingsInfo(_Open):
    file: str = EMBEDDINGS_FILE
    dim: int = Field(ge=1, le=16384)
    count: int = Field(ge=0)
    dtype: Literal["<f4"] = "<f4"
    model: str | None = None
    """The model (and precision) that made the vectors; older archives: by ``dim``."""


class DocumentRecord(_Open):
    """The document's row (what a fresh database needs to recreate it)."""

    title: str | None = None
    author: str | None = None
    source_type: str | None = None
    source_url: str | None = None
    source_path: str | None = None
    status: str | None = None
    word_count: int | None = None
    page_count: int | None = None
    chunk_count: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None


class ManifestDocument(_Open):
    id: str
    title: str | None = None
    author: str | None = None
    source_type: str | None = None
    files: list[FileEntry] = Field(default_factory=list)
    chunk_count: int = Field(0, ge=0)
    highlight_count: int = Field(0, ge=0)
    connection_count: int = Field(0, ge=0)
    embeddings: EmbeddingsInfo | None = None
    document: DocumentRecord | None = None

    _check_id = field_validator("id")(_uuid)


class ExportManifest(_Open):
    format: str
    version: str
    exported_at: str | None = None
    job_id: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    documents: list[ManifestDocument] = Field(default_factory=list)


class ChunkRecord(_Open):
    """One chunk of ``chunks.json``: its text and index at least."""

    index: int = Field(ge=0)
    text: str
    id: str | None = None
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=0)
    token_count: int | None = Field(None, ge=0)
    heading_path: list[str] = Field(default_factory=list)
    themes: list[Any] | None = None
    importance: float | None = None
    summary: str | None = None
    concepts: list[Any] | None = None
    polarity: float | None = None
    domain: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else _uuid(value)


class ChunksFile(_Open):
    version: str
    document_id: str | None = None
    chunks: list[ChunkRecord]


class MetadataFile(_Open):
    title: str | None = None
    author: str | None = None
    source_type: str | None = None
    word_count: int | None = None
    page_count: int | None = None


class HighlightRecord(_Open):
    id: str
    text: str
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=0)
    chunk_ids: list[str] = Field(default_factory=list)
    note: str | None = None
    color: str | None = None
    tags: list[str] = Field(default_factory=list)
    source: Literal["manual", "readwise", "obsidian"] = "manual"
    external_id: str | None = None
    match_method: str | None = None
    confidence: float | None = None
    status: Literal["matched", "needs_review", "unmatched"] = "matched"
    created_at: str | None = None
    updated_at: str | None = None

    _check_id = field_validator("id")(_uuid)


class HighlightsFile(_Open):
    version: str = "1.0"
    document_id: str | None = None
    highlights: list[HighlightRecord]


class ConnectionRecord(_Open):
    id: str
    source_chunk_id: str
    target_chunk_id: str
    source_document_id: str
    target_document_id: str
    engine_scores: dict[str, float] = Field(default_factory=dict)
    combined_score: float
    reason: str | None = None
    user_validated: bool = False
    created_at: str | None = None

    _check_ids = field_validator(
        "id", "source_chunk_id", "target_chunk_id", "source_document_id", "target_document_id"
    )(_uuid)


class ConnectionsFile(_Open):
    version: str = "1.0"
    document_id: str | None = None
    connections: list[ConnectionRecord]


def parse_model(model: type[BaseModel], raw: bytes, where: str) -> Any:
    """``raw`` JSON into ``model``; malformed JSON or a field that does not fit is
    ``invalid`` with the file and the field named."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
        kind = "is not valid JSON" if first.get("type") == "json_invalid" else "does not fit"
        raise InvalidInputError(
            f"{where} {kind}: {loc}: {first.get('msg')} ({exc.error_count()} problem(s)).",
            "Export the document again; files of an export must not be edited by hand.",
        ) from None


def parse_chunks(raw: bytes, where: str) -> ChunksFile:
    """``chunks.json``: the ``{"version": "1.0", "chunks": [...]}`` envelope, each chunk
    with at least its text and index."""
    try:
        head = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(
            f"{where} is not valid JSON ({exc}).",
            "Export the document again; files of an export must not be edited by hand.",
        ) from None
    if not isinstance(head, dict) or "chunks" not in head:
        raise InvalidInputError(
            f"{where} is not a chunks file: it needs the envelope "
            '{"version": "1.0", "chunks": [...]}.',
            "Export the document again with this version of Rhizome.",
        )
    version = head.get("version")
    if str(version) != CHUNKS_VERSION:
        raise InvalidInputError(
            f"{where} has version {version!r}; this Rhizome reads chunks.json version "
            f"{CHUNKS_VERSION}.",
            "Export the document again with this version of Rhizome, or upgrade Rhizome.",
        )
    parsed: ChunksFile = parse_model(ChunksFile, raw, where)
    indexes = [c.index for c in parsed.chunks]
    if len(set(indexes)) != len(indexes):
        raise InvalidInputError(
            f"{where} has two chunks with the same index.", "Export the document again."
        )
    ids = [c.id for c in parsed.chunks if c.id]
    if len(set(ids)) != len(ids):
        raise InvalidInputError(
            f"{where} has two chunks with the same id.", "Export the document again."
        )
    return parsed


def chunks_json(document_id: str, chunks: Sequence[Chunk]) -> bytes:
    """``chunks.json`` exactly as ``process_document`` writes it."""
    doc = {
        "version": CHUNKS_VERSION,
        "document_id": document_id,
        "chunks": [c.to_dict() for c in chunks],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# --- export: one document --------------------------------------------------------------------


@dataclass
class ExportOptions:
    connections: bool = True
    highlights: bool = True


def export_document(
    store: SqlJobStore,
    storage: Storage,
    user_id: str,
    document_id: str,
    part_path: str,
    options: ExportOptions,
) -> ManifestDocument:
    """Write one document (its storage files, chunks, embeddings, highlights and
    connections) into a part ZIP at ``part_path``; returns its manifest entry."""
    library = Library(store)
    queries = load_queries(store.dialect, "rhizome.library")
    doc = library.get_document(document_id, user_id)
    chunks = library.list_chunks(doc.id, user_id)
    folder = doc.storage_folder
    prefix = f"{doc.id}/"
    writer = PartWriter(part_path)
    highlight_count = connection_count = 0
    embeddings: EmbeddingsInfo | None = None
    try:
        for key in storage.list(folder):
            name = key[len(folder) + 1 :]
            if is_checkpoint_key(key) or name in DATABASE_FILES:
                continue
            if name == CHUNKS_FILE and chunks:
                stored = storage.get(key)
                # the stored file, byte for byte, while it says what the database says;
                # else the database's chunks (it is the truth)
                same = _same_chunks(stored, chunks)
                writer.add_bytes(prefix + name, stored if same else chunks_json(doc.id, chunks))
                continue
            with storage.open_read(key) as src:
                writer.add_stream(prefix + name, src)
        if chunks:
            if prefix + CHUNKS_FILE not in writer.files:
                writer.add_bytes(prefix + CHUNKS_FILE, chunks_json(doc.id, chunks))
            vectors = [c.embedding for c in chunks]
            dims = {len(v) for v in vectors if v is not None}
            if len(dims) == 1:
                dim = dims.pop()
                table = np.full((len(chunks), dim), np.nan, dtype="<f4")
                for i, v in enumerate(vectors):
                    if v is not None:
                        table[i] = v
                writer.add_bytes(prefix + EMBEDDINGS_FILE, table.tobytes())
                models = {c.embedding_model for c in chunks if c.embedding is not None}
                embeddings = EmbeddingsInfo(
                    dim=dim, count=len(chunks), model=models.pop() if len(models) == 1 else None
                )
        with store.session(queries) as s:
            if options.highlights:
                rows = s.all("export_highlights", {"user_id": user_id, "document_id": doc.id})
                items = []
                for r in rows:
                    h = Highlight.from_row(r).to_dict()
                    h.pop("user_id", None)
                    items.append(h)
                highlight_count = len(items)
                payload = {"version": "1.0", "document_id": doc.id, "highlights": items}
                writer.add_bytes(prefix + HIGHLIGHTS_FILE, _json_bytes(payload))
            if options.connections:
                rows = s.all("export_connections", {"user_id": user_id, "document_id": doc.id})
                conns = [_connection_record(r) for r in rows]
                connection_count = len(conns)
                payload = {"version": "1.0", "document_id": doc.id, "connections": conns}
                writer.add_bytes(prefix + CONNECTIONS_FILE, _json_bytes(payload))
    finally:
        writer.close()
    files = [
        FileEntry(name=name[len(prefix) :], size=size, sha256=digest)
        for name, (size, digest) in writer.files.items()
    ]
    return ManifestDocument(
        id=doc.id,
        title=doc.title,
        author=doc.author,
        source_type=doc.source_type,
        files=files,
        chunk_count=len(chunks),
        highlight_count=highlight_count,
        connection_count=connection_count,
        embeddings=embeddings,
        document=_document_record(doc),
    )


def _same_chunks(stored: bytes, chunks: Sequence[Chunk]) -> bool:
    """Whether a stored ``chunks.json`` holds exactly the database's chunks (ids, indexes,
    text, offsets, enrichment)."""
    try:
        head = json.loads(stored)
    except ValueError:
        return False
    items = head.get("chunks") if isinstance(head, dict) else None
    if str(head.get("version")) != CHUNKS_VERSION or not isinstance(items, list):
        return False
    if len(items) != len(chunks):
        return False
    for item, c in zip(items, chunks, strict=True):
        if not isinstance(item, dict):
            return False
        if (item.get("id"), item.get("index"), item.get("text")) != (c.id, c.index, c.text):
            return False
        if (item.get("start"), item.get("end")) != (c.start, c.end):
            return False
        if {k: item[k] for k in ENRICHMENT_FIELDS if item.get(k) is not None} != c.enrichment:
            return False
    return True


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str).encode("utf-8")


def _connection_record(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _iso(v) for k, v in row.items() if k != "user_id"}
    for key in ("engine_scores",):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    for key in ("user_validated", "starred", "rejected"):
        if key in out and out[key] is not None:
            out[key] = bool(out[key])
    return out


def _document_record(doc: Document) -> DocumentRecord:
    return DocumentRecord(
        title=doc.title,
        author=doc.author,
        source_type=doc.source_type,
        source_url=doc.source_url,
        source_path=doc.source_path,
        status=doc.status,
        word_count=doc.word_count,
        page_count=doc.page_count,
        chunk_count=doc.chunk_count,
        metadata=doc.metadata,
        created_at=doc.created_at.isoformat() if doc.created_at else None,
        updated_at=doc.updated_at.isoformat() if doc.updated_at else None,
    )


def export_manifest(
    entries: Sequence[ManifestDocument], *, job_id: str, options: ExportOptions
) -> bytes:
    manifest = ExportManifest(
        format=FORMAT,
        version=FORMAT_VERSION,
        exported_at=datetime.now(UTC).isoformat(),
        job_id=job_id,
        options={"connections": options.connections, "highlights": options.highlights},
        documents=list(entries),
    )
    return manifest.model_dump_json(indent=1).encode("utf-8")


# --- import sources: an export ZIP, or a document folder in storage ----------------------


class ImportSource(Protocol):
    label: str
    exported_at: str | None

    def document_ids(self) -> list[str]: ...
    def entry(self, document_id: str) -> ManifestDocument | None: ...
    def names(self, document_id: str) -> list[str]: ...
    def read(self, document_id: str, name: str) -> bytes | None: ...
    def open(self, document_id: str, name: str) -> AbstractContextManager[BinaryIO]: ...


class ZipSource:
    """An export ZIP, checked for safety and for being an export at all."""

    def __init__(self, fileobj: BinaryIO, label: str, limits: ZipLimits | None = None) -> None:
        self.label = label
        self.zip = open_zip(fileobj)
        files = check_zip(self.zip, limits)
        if "manifest.json" not in self.zip.NameToInfo:
            raise InvalidInputError(
                f"{label} is not a Rhizome export: it has no manifest.json at its top.",
                "Import a ZIP made by `rhizome export` or the Export page.",
            )
        raw = self._read_entry("manifest.json")
        try:
            head = json.loads(raw)
        except ValueError:
            head = None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise InvalidInputError(
                f"{label} is not a Rhizome export: its manifest.json does not say "
                f'"format": "{FORMAT}".',
                "Import a ZIP made by `rhizome export` or the Export page.",
            )
        if str(head.get("version", "")).split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise InvalidInputError(
                f"{label} is export format version {head.get('version')!r}; this Rhizome "
                f"reads version {FORMAT_VERSION}.",
                "Export again with this version of Rhizome, or upgrade Rhizome.",
            )
        self.manifest: ExportManifest = parse_model(ExportManifest, raw, f"{label}: manifest.json")
        self.exported_at = self.manifest.exported_at
        self._entries = {d.id: d for d in self.manifest.documents}
        if len(self._entries) != len(self.manifest.documents):
            raise InvalidInputError(
                f"{label}: manifest.json lists a document twice.", "Export the library again."
            )
        self._names: dict[str, list[str]] = {d: [] for d in self._entries}
        for info in files:
            if info.filename == "manifest.json":
                continue
            head_part, _, rest = info.filename.partition("/")
            if not rest or head_part not in self._names:
                raise InvalidInputError(
                    f"{label} is not a Rhizome export: {info.filename!r} belongs to no "
                    "document of its manifest.",
                    "Import a ZIP made by `rhizome export`, unmodified.",
                )
            self._names[head_part].append(rest)

    def _read_entry(self, name: str) -> bytes:
        info = self.zip.NameToInfo[name]
        if info.file_size > MAX_JSON_BYTES:
            raise InvalidInputError(f"{self.label}: {name} is too large.", "Export again.")
        try:
            return self.zip.read(info)
        except Exception as exc:  # CRC errors, truncated data, bad deflate streams
            raise InvalidInputError(
                f"{self.label}: {name} cannot be read ({exc}).",
                "The archive is damaged: export the library again.",
            ) from None

    def document_ids(self) -> list[str]:
        return list(self._entries)

    def entry(self, document_id: str) -> ManifestDocument | None:
        return self._entries.get(document_id)

    def names(self, document_id: str) -> list[str]:
        return list(self._names.get(document_id, []))

    def read(self, document_id: str, name: str) -> bytes | None:
        full = f"{document_id}/{name}"
        if full not in self.zip.NameToInfo:
            return None
        return self._read_entry(full)

    @contextmanager
    def open(self, document_id: str, name: str) -> Iterator[BinaryIO]:
        with self.zip.open(f"{document_id}/{name}") as fh:
            yield fh  # type: ignore[misc]

    def close(self) -> None:
        self.zip.close()


class FolderSource:
    """A document folder already in storage (``documents/{user}/{id}/``)."""

    def __init__(self, storage: Storage, user_id: str, document_id: str) -> None:
        self.storage = storage
        self.document_id = _uuid_or_invalid(document_id)
        self.folder = document_folder(user_id, self.document_id)
        self.label = f"storage folder {self.folder}"
        self.exported_at: str | None = None
        self._names = [
            k[len(self.folder) + 1 :] for k in storage.list(self.folder) if not is_checkpoint_key(k)
        ]
        if CHUNKS_FILE not in self._names:
            raise InvalidInputError(
                f"There is no {CHUNKS_FILE} in {self.folder}: nothing to import.",
                "Run `rhizome admin scan-storage` to see which folders can be imported.",
            )

    def document_ids(self) -> list[str]:
        return [self.document_id]

    def entry(self, document_id: str) -> ManifestDocument | None:
        return None

    def names(self, document_id: str) -> list[str]:
        return list(self._names) if document_id == self.document_id else []

    def read(self, document_id: str, name: str) -> bytes | None:
        if document_id != self.document_id or name not in self._names:
            return None
        try:
            return self.storage.get(f"{self.folder}/{name}")
        except FileNotFoundError:
            return None

    @contextmanager
    def open(self, document_id: str, name: str) -> Iterator[BinaryIO]:
        with self.storage.open_read(f"{self.folder}/{name}") as fh:
            yield fh


def _uuid_or_invalid(value: str) -> str:
    try:
        return _uuid(value)
    except ValueError:
        raise InvalidInputError(
            f"{value!r} is not a document id.", "Give the id of a document folder."
        ) from None


# --- reading one document of a source ----------------------------------------------------------


@dataclass
class SourceDocument:
    """One document of an import source, parsed and checked."""

    id: str
    entry: ManifestDocument | None
    record: DocumentRecord
    chunks: list[ChunkRecord]
    highlights: list[HighlightRecord]
    connections: list[ConnectionRecord]
    files: list[str]
    """Files for the document's storage folder (database snapshots left out)."""
    content: str | None
    embeddings: np.ndarray | None = None


def read_document(source: ImportSource, document_id: str, *, verify: bool = True) -> SourceDocument:
    """Parse and check every file of one document of ``source`` (sizes and SHA-256 against
    the manifest with ``verify``)."""
    entry = source.entry(document_id)
    where = f"{source.label}: {document_id}"
    names = source.names(document_id)
    if verify and entry is not None:
        listed = {f.name: f for f in entry.files}
        if set(listed) != set(names):
            missing = sorted(set(listed) - set(names))
            extra = sorted(set(names) - set(listed))
            raise InvalidInputError(
                f"{where}: the files do not match manifest.json"
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (not listed: {', '.join(extra)})" if extra else "")
                + ".",
                "The archive was changed after the export: export the library again.",
            )
        for name in names:
            safe_name(name)
            try:
                with source.open(document_id, name) as fh:
                    size, digest = hash_stream(fh)
            except InvalidInputError:
                raise
            except Exception as exc:
                raise InvalidInputError(
                    f"{where}/{name} cannot be read ({exc}).",
                    "The archive is damaged: export the library again.",
                ) from None
            if (size, digest) != (listed[name].size, listed[name].sha256):
                raise InvalidInputError(
                    f"{where}/{name} does not match its size and SHA-256 in manifest.json.",
                    "The archive was changed or damaged: export the library again.",
                )
    raw = source.read(document_id, CHUNKS_FILE)
    if raw is None:
        raise InvalidInputError(f"{where} has no {CHUNKS_FILE}.", "Export the document again.")
    chunks_file = parse_chunks(raw, f"{where}/{CHUNKS_FILE}")
    if chunks_file.document_id and _uuid_or_none(chunks_file.document_id) != document_id:
        raise InvalidInputError(
            f"{where}/{CHUNKS_FILE} belongs to document {chunks_file.document_id}.",
            "Export the document again.",
        )
    chunks = sorted(chunks_file.chunks, key=lambda c: c.index)
    meta_raw = source.read(document_id, METADATA_FILE)
    meta = (
        parse_model(MetadataFile, meta_raw, f"{where}/{METADATA_FILE}")
        if meta_raw is not None
        else MetadataFile()
    )
    record = entry.document if entry and entry.document else None
    if record is None:
        record = DocumentRecord(
            title=meta.title,
            author=meta.author,
            source_type=meta.source_type,
            word_count=meta.word_count,
            page_count=meta.page_count,
        )
    record.title = record.title or meta.title or (entry.title if entry else None) or "Untitled"
    record.source_type = record.source_type or meta.source_type or "text"
    content_raw = source.read(document_id, CONTENT_FILE)
    content = content_raw.decode("utf-8", errors="replace") if content_raw is not None else None
    highlights: list[HighlightRecord] = []
    raw = source.read(document_id, HIGHLIGHTS_FILE)
    if raw is not None:
        highlights = parse_model(HighlightsFile, raw, f"{where}/{HIGHLIGHTS_FILE}").highlights
    connections: list[ConnectionRecord] = []
    raw = source.read(document_id, CONNECTIONS_FILE)
    if raw is not None:
        connections = parse_model(ConnectionsFile, raw, f"{where}/{CONNECTIONS_FILE}").connections
    embeddings = None
    raw = source.read(document_id, EMBEDDINGS_FILE)
    if raw is not None:
        info = entry.embeddings if entry else None
        dim = info.dim if info else 0
        if not dim or len(raw) != dim * 4 * len(chunks):
            raise InvalidInputError(
                f"{where}/{EMBEDDINGS_FILE} does not hold one vector per chunk.",
                "Export the document again, or import with regenerate_embeddings.",
            )
        embeddings = np.frombuffer(raw, dtype="<f4").reshape(len(chunks), dim)
    files = [n for n in names if n not in DATABASE_FILES]
    return SourceDocument(
        id=document_id,
        entry=entry,
        record=record,
        chunks=chunks,
        highlights=highlights,
        connections=connections,
        files=files,
        content=content,
        embeddings=embeddings,
    )


def _uuid_or_none(value: str) -> str | None:
    try:
        return _uuid(value)
    except ValueError:
        return None


# --- planning: conflicts and the report ----------------------------------------------------------


@dataclass
class PlannedDocument:
    id: str
    title: str
    conflict: bool
    action: str
    """``create`` (not in the database), ``import`` (no chunks yet), or the strategy."""
    file_chunks: int
    db_chunks: int


@dataclass
class ImportPlan:
    documents: list[PlannedDocument] = field(default_factory=list)
    report: dict[str, Any] | None = None
    """The conflict report (None when nothing conflicts)."""

    @property
    def conflicts(self) -> list[PlannedDocument]:
        return [d for d in self.documents if d.conflict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": [d.__dict__ for d in self.documents],
            "conflicts": self.report,
        }


def plan_import(
    store: SqlJobStore,
    source: ImportSource,
    user_id: str,
    strategy: Strategy | None,
    *,
    parse: bool = True,
    remap: Remap | None = None,
) -> ImportPlan:
    """Which documents conflict (the database already has chunks for them), what each
    will get, and the conflict report. ``parse=False`` reads only conflicting documents'
    ``chunks.json`` (quick: the request that uploads or names the source)."""
    library = Library(store)
    queries = load_queries(store.dialect, "rhizome.library")
    plan = ImportPlan()
    conflicts: list[dict[str, Any]] = []
    for source_id in source.document_ids():
        entry = source.entry(source_id)
        doc_id = remap(source_id) if remap else source_id
        try:
            existing: Document | None = library.get_document(doc_id, user_id)
        except DocumentNotFoundError:
            existing = None
        with store.session(queries) as s:
            row = s.one("count_chunks", {"user_id": user_id, "document_id": doc_id})
        db_chunks = int(row["n"]) if row and existing else 0
        conflict = db_chunks > 0
        title = (existing.title if existing else None) or (entry.title if entry else None)
        file_chunks: int
        samples: list[dict[str, Any]] = []
        if conflict or parse or entry is None:
            parsed = read_document(source, source_id, verify=False)
            file_chunks = len(parsed.chunks)
            title = title or parsed.record.title
            samples = [{"index": c.index, "text": _sample(c.text)} for c in parsed.chunks[:SAMPLES]]
        else:
            file_chunks = entry.chunk_count if entry else 0
        action = (
            (strategy or "needs_strategy") if conflict else ("import" if existing else "create")
        )
        plan.documents.append(
            PlannedDocument(
                source_id, title or "Untitled", conflict, action, file_chunks, db_chunks
            )
        )
        if conflict:
            assert existing is not None
            with store.session(queries) as s:
                rows = s.all(
                    "sample_chunks", {"user_id": user_id, "document_id": doc_id, "limit": SAMPLES}
                )
            conflicts.append(
                {
                    "document_id": doc_id,
                    "title": title,
                    "database": {
                        "chunk_count": db_chunks,
                        "created_at": _iso(existing.created_at),
                        "updated_at": _iso(existing.updated_at),
                        "samples": [
                            {"index": int(r["chunk_index"]), "text": _sample(r["text"])}
                            for r in rows
                        ],
                    },
                    "import": {
                        "chunk_count": file_chunks,
                        "exported_at": source.exported_at,
                        "created_at": entry.document.created_at
                        if entry and entry.document
                        else None,
                        "updated_at": entry.document.updated_at
                        if entry and entry.document
                        else None,
                        "samples": samples,
                    },
                    "recommended": "merge_smart" if file_chunks == db_chunks else "replace",
                }
            )
    if conflicts:
        plan.report = {
            "source": source.label,
            "documents": len(plan.documents),
            "conflicting": len(conflicts),
            "new": len(plan.documents) - len(conflicts),
            "conflicts": conflicts,
            "recommended": "merge_smart"
            if all(c["recommended"] == "merge_smart" for c in conflicts)
            else "replace",
            "strategies": STRATEGY_HELP,
        }
    return plan


def _sample(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ImportConflictError(InvalidInputError):
    """An import needs a strategy: the database already has chunks for some documents."""

    def __init__(self, report: dict[str, Any]) -> None:
        n = report["conflicting"]
        super().__init__(
            f"{n} document{'s' if n != 1 else ''} of this import already "
            f"{'have' if n != 1 else 'has'} chunks in the library.",
            f"Choose a strategy: merge_smart (recommended: {report['recommended']}), replace "
            "or skip.",
        )
        self.report = report


# --- applying one document ---------------------------------------------------------------------


@dataclass
class Remap:
    """Ids taken by another user's rows get ids of their own (deterministic, so a second
    import of the same archive finds them again)."""

    user_id: str
    ids: dict[str, str] = field(default_factory=dict)

    def __call__(self, value: str) -> str:
        return self.ids.get(value, value)

    def add(self, old: str) -> None:
        self.ids[old] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rhizome:{self.user_id}:{old}"))

    def to_json(self) -> dict[str, str]:
        return dict(self.ids)


def find_taken_ids(store: SqlJobStore, user_id: str, doc: SourceDocument) -> list[str]:
    """Ids of ``doc`` (the document, its chunks) that rows of another user, or of another
    document, already have."""
    queries = load_queries(store.dialect, "rhizome.library")
    taken: list[str] = []
    with store.session(queries) as s:
        owner = s.one("document_owner", {"id": doc.id})
        if owner is not None and owner["user_id"] != user_id:
            taken.append(doc.id)
            taken.extend(c.id for c in doc.chunks if c.id)  # its rows move with it
            taken.extend(h.id for h in doc.highlights)
            taken.extend(c.id for c in doc.connections)
            return taken
        ids = [c.id for c in doc.chunks if c.id]
        for start in range(0, len(ids), 500):
            for r in s.all("chunk_owners", {"ids": ids[start : start + 500]}):
                if r["user_id"] != user_id or str(r["document_id"]) != doc.id:
                    taken.append(str(r["id"]))
    return taken


@dataclass
class AppliedDocument:
    id: str
    action: str
    changed: bool = False
    files_written: int = 0
    chunks_inserted: int = 0
    chunks_updated: int = 0
    chunks_deleted: int = 0
    embeddings_set: int = 0
    highlights_added: int = 0
    highlights_kept: int = 0
    highlights_needs_review: int = 0
    connections_added: int = 0
    connections_kept: int = 0
    connections_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def apply_document(
    store: SqlJobStore,
    storage: Storage,
    source: ImportSource,
    user_id: str,
    doc: SourceDocument,
    action: str,
    remap: Remap,
    *,
    copy_files: bool = True,
) -> AppliedDocument:
    """Apply one document with ``action`` (``create``, ``import``, ``replace``,
    ``merge_smart`` or ``skip``). Storage files first (overwritten: idempotent), then
    every database change in one transaction, so a crash leaves the document as it was
    or as imported, never half of it."""
    out = AppliedDocument(id=remap(doc.id), action=action)
    if action == "skip":
        return out
    queries = load_queries(store.dialect, "rhizome.library")
    doc_id = remap(doc.id)
    folder = document_folder(user_id, doc_id)
    if copy_files:
        for name in doc.files:
            key = f"{folder}/{name}"
            if action == "merge_smart" and storage.exists(key):
                continue
            _store_file(storage, source, doc.id, name, key)
            out.files_written += 1
    chunk_ids = [remap(c.id) if c.id else _chunk_id(doc_id, c.index) for c in doc.chunks]
    rows = [
        _chunk_row(user_id, doc_id, c, cid, doc.content)
        for c, cid in zip(doc.chunks, chunk_ids, strict=True)
    ]
    with store.transaction(queries) as tx:
        existing = tx.one("get_document", {"id": doc_id, "user_id": user_id})
        if existing is None:
            record = doc.record
            metadata = dict(record.metadata)
            if isinstance(metadata.get("source_key"), str):
                name = metadata["source_key"].rsplit("/", 1)[-1]
                metadata["source_key"] = f"{folder}/{name}"
            tx.run(
                "import_document",
                {
                    "id": doc_id,
                    "user_id": user_id,
                    "title": record.title or "Untitled",
                    "author": record.author,
                    "source_type": record.source_type or "text",
                    "source_path": record.source_path,
                    "source_url": record.source_url,
                    "word_count": record.word_count,
                    "page_count": record.page_count,
                    "chunk_count": len(rows),
                    "storage_folder": folder,
                    "metadata": metadata,
                    "created_at": record.created_at,
                },
            )
            out.changed = True
        if action == "merge_smart":
            for r in rows:
                params = {
                    k: r[k] for k in ("user_id", "document_id", "chunk_index", *ENRICHMENT_FIELDS)
                }
                out.chunks_updated += tx.run("merge_chunk_enrichment", params)
        else:  # create, import, replace: the chunks become exactly the file's
            before = _count(tx, "count_document_connections", user_id, doc_id)
            # the user's decisions on connections whose passages survive are kept
            decided = remember_decisions(tx, doc_id, user_id)
            tx.run("park_chunk_indexes", {"user_id": user_id, "document_id": doc_id})
            out.chunks_deleted = tx.run(
                "delete_chunks_except",
                {"user_id": user_id, "document_id": doc_id, "keep": list(chunk_ids)},
            )
            out.connections_kept = _count(tx, "count_document_connections", user_id, doc_id)
            out.connections_dropped = before - out.connections_kept
            existing_ids: set[str] = set()
            for start in range(0, len(chunk_ids), 500):
                part = chunk_ids[start : start + 500]
                existing_ids.update(
                    str(r["id"])
                    for r in tx.all("chunk_owners", {"ids": list(part)})
                    if r["user_id"] == user_id and str(r["document_id"]) == doc_id
                )
            for start in range(0, len(rows), 500):
                tx.many("upsert_chunk", rows[start : start + 500])
            out.chunks_updated = sum(r["id"] in existing_ids for r in rows)
            out.chunks_inserted = len(rows) - out.chunks_updated
            reattach_decisions(tx, decided, doc_id, user_id, rows)
            if doc.embeddings is not None:
                info = doc.entry.embeddings if doc.entry else None
                model = (info.model if info else None) or legacy_embedding_model(
                    doc.embeddings.shape[1]
                )
                vectors = [
                    {"id": cid, "user_id": user_id, "embedding": encode_vector(vec), "model": model}
                    for cid, vec in zip(chunk_ids, doc.embeddings, strict=True)
                    if not math.isnan(float(vec[0]))
                ]
                if vectors:
                    tx.many("set_embedding", vectors)
                out.embeddings_set = len(vectors)
        # highlights: add the file's, then (after a replace) re-anchor all of them
        out.highlights_kept = _count(tx, "count_highlights", user_id, doc_id)
        for h in doc.highlights:
            out.highlights_added += tx.run(
                "insert_highlight", _highlight_row(user_id, doc_id, h, remap)
            )
        if action != "merge_smart":
            spans = [
                (str(r["id"]), int(r["start_offset"]), int(r["end_offset"]))
                for r in tx.all("chunk_spans", {"user_id": user_id, "document_id": doc_id})
            ]
            for r in tx.all("export_highlights", {"user_id": user_id, "document_id": doc_id}):
                stored = Highlight.from_row(r)
                status = stored.status
                ids = stored.chunk_ids
                if stored.start is not None and stored.end is not None:
                    holds = (
                        doc.content is None or doc.content[stored.start : stored.end] == stored.text
                    )
                    ids = spanned_chunks(spans, stored.start, stored.end)
                    status = "matched" if holds and ids else "needs_review"
                tx.run(
                    "anchor_highlight",
                    {
                        "id": stored.id,
                        "user_id": user_id,
                        "chunk_id": ids[0] if ids else None,
                        "chunk_ids": dumps(ids),
                        "status": status,
                    },
                )
                if status == "needs_review":
                    out.highlights_needs_review += 1
        for c in doc.connections:
            out.connections_added += tx.run("import_connection", _connection_row(user_id, c, remap))
        finished = tx.run(
            "finish_import_document",
            {
                "id": doc_id,
                "user_id": user_id,
                "chunk_count": _count(tx, "count_chunks", user_id, doc_id),
                "word_count": doc.record.word_count,
                "page_count": doc.record.page_count,
            },
        )
    out.changed = bool(
        out.changed
        or finished
        or out.files_written
        or out.chunks_inserted
        or out.chunks_updated
        or out.chunks_deleted
        or out.highlights_added
        or out.connections_added
    )
    return out


def _count(tx: Any, query: str, user_id: str, document_id: str) -> int:
    row = tx.one(query, {"user_id": user_id, "document_id": document_id})
    return int(row["n"]) if row else 0


def _store_file(storage: Storage, source: ImportSource, doc_id: str, name: str, key: str) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="rhizome-import-") as tmp:
        with source.open(doc_id, name) as src:
            while True:
                block = src.read(1024 * 1024)
                if not block:
                    break
                tmp.write(block)
        tmp.flush()
        storage.put_file(key, tmp.name)


def _chunk_id(document_id: str, index: int) -> str:
    return str(uuid.uuid5(uuid.UUID(document_id), f"chunk:{index}"))


def _chunk_row(
    user_id: str, document_id: str, c: ChunkRecord, chunk_id: str, content: str | None
) -> dict[str, Any]:
    start, end = c.start, c.end
    if start is None or end is None:
        found = locate(content, c.text) if content else None
        start, end = (found[0], found[1]) if found else (0, len(c.text))
    return {
        "id": chunk_id,
        "user_id": user_id,
        "document_id": document_id,
        "chunk_index": c.index,
        "text": c.text,
        "heading_path": dumps(list(c.heading_path)),
        "start_offset": start,
        "end_offset": end,
        "token_count": c.token_count if c.token_count is not None else len(c.text.split()),
        "themes": dumps(c.themes) if c.themes is not None else None,
        "importance": c.importance,
        "summary": c.summary,
        "concepts": dumps(c.concepts) if c.concepts is not None else None,
        "polarity": c.polarity,
        "domain": c.domain,
    }


def _highlight_row(
    user_id: str, document_id: str, h: HighlightRecord, remap: Remap
) -> dict[str, Any]:
    ids = [remap(_uuid(c)) for c in h.chunk_ids if _uuid_or_none(c)]
    return {
        "id": remap(h.id),
        "user_id": user_id,
        "document_id": document_id,
        "chunk_id": ids[0] if ids else None,
        "chunk_ids": dumps(ids),
        "text": h.text,
        "note": h.note,
        "color": h.color,
        "tags": dumps(list(h.tags)),
        "source": h.source,
        "external_id": h.external_id,
        "start_offset": h.start,
        "end_offset": h.end,
        "match_method": h.match_method,
        "confidence": h.confidence,
        "status": h.status,
        "created_at": h.created_at,
        "updated_at": h.updated_at,
    }


def _connection_row(user_id: str, c: ConnectionRecord, remap: Remap) -> dict[str, Any]:
    return {
        "id": remap(c.id),
        "user_id": user_id,
        "source_chunk_id": remap(c.source_chunk_id),
        "target_chunk_id": remap(c.target_chunk_id),
        "source_document_id": remap(c.source_document_id),
        "target_document_id": remap(c.target_document_id),
        "engine_scores": dict(c.engine_scores),
        "combined_score": c.combined_score,
        "reason": c.reason,
        "user_validated": c.user_validated,
        "created_at": c.created_at,
    }


# --- the storage scan ---------------------------------------------------------------------

ScanStatus = Literal["healthy", "missing_from_db", "missing_from_storage", "out_of_sync"]


def scan_storage(store: SqlJobStore, storage: Storage, user_id: str) -> dict[str, Any]:
    """Compare the user's document folders in storage with the database: each document is
    ``healthy``, ``missing_from_db`` (a folder with chunks.json, no row: import it),
    ``missing_from_storage`` (a ready document without its files) or ``out_of_sync``
    (chunk counts differ: re-export it, which rewrites the folder from the database)."""
    library = Library(store)
    queries = load_queries(store.dialect, "rhizome.library")
    root = f"documents/{user_id}"
    folders: dict[str, set[str]] = {}
    for key in storage.list(root):
        rest = key[len(root) + 1 :]
        doc_id, _, name = rest.partition("/")
        if name and not is_checkpoint_key(key):
            folders.setdefault(doc_id, set()).add(name)
    docs = {d.id: d for d in library.list_documents(user_id, limit=10_000_000)}
    with store.session(queries) as s:
        counts = {
            str(r["document_id"]): int(r["n"]) for r in s.all("chunk_counts", {"user_id": user_id})
        }
    rows: list[dict[str, Any]] = []
    for doc_id in sorted(set(folders) | set(docs)):
        doc = docs.get(doc_id)
        names = folders.get(doc_id, set())
        stored = _stored_chunk_count(storage, f"{root}/{doc_id}", names)
        db = counts.get(doc_id, 0)
        status: ScanStatus
        action: str | None = None
        if doc is None:
            if CHUNKS_FILE not in names or _uuid_or_none(doc_id) != doc_id:
                continue  # not a document folder (e.g. an upload that never finished)
            status, action = "missing_from_db", "import"
        elif doc.status in ("pending", "processing"):
            continue  # still being written
        elif CHUNKS_FILE not in names:
            if doc.status != "ready":
                continue
            status, action = "missing_from_storage", "export"
        elif stored != db:
            status, action = "out_of_sync", "export"
        else:
            status = "healthy"
        rows.append(
            {
                "document_id": doc_id,
                "title": doc.title if doc else _stored_title(storage, f"{root}/{doc_id}", names),
                "status": status,
                "action": action,
                "db_chunks": db if doc else None,
                "storage_chunks": stored,
                "files": sorted(names),
            }
        )
    summary: dict[str, int] = {
        s: 0 for s in ("healthy", "missing_from_db", "missing_from_storage", "out_of_sync")
    }
    for r in rows:
        summary[r["status"]] += 1
    return {"documents": rows, "counts": summary}


def _stored_chunk_count(storage: Storage, folder: str, names: set[str]) -> int | None:
    if CHUNKS_FILE not in names:
        return None
    try:
        head = json.loads(storage.get(f"{folder}/{CHUNKS_FILE}"))
    except (FileNotFoundError, ValueError):
        return None
    chunks = head.get("chunks") if isinstance(head, dict) else None
    return len(chunks) if isinstance(chunks, list) else None


def _stored_title(storage: Storage, folder: str, names: set[str]) -> str | None:
    if METADATA_FILE not in names:
        return None
    try:
        head = json.loads(storage.get(f"{folder}/{METADATA_FILE}"))
    except (FileNotFoundError, ValueError):
        return None
    title = head.get("title") if isinstance(head, dict) else None
    return title if isinstance(title, str) else None


def write_back(store: SqlJobStore, storage: Storage, user_id: str, document_id: str) -> None:
    """Rewrite the document folder's ``chunks.json`` from the database (the storage scan's
    re-export of an out-of-sync document)."""
    library = Library(store)
    doc = library.get_document(document_id, user_id)
    chunks = library.list_chunks(doc.id, user_id)
    storage.put(f"{doc.storage_folder}/{CHUNKS_FILE}", chunks_json(doc.id, chunks))


# --- requests from the CLI and the API ---------------------------------------------------------

UPLOAD_TTL_SECONDS = 24 * 3600


def upload_key(user_id: str) -> str:
    """A new key for an uploaded ZIP: ``imports/{user}/{time}-{random}.zip``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"imports/{user_id}/{stamp}-{uuid.uuid4().hex[:12]}.zip"


def save_upload(storage: Storage, user_id: str, path: str) -> str:
    """Store a ZIP to import (streamed from the local file ``path``); uploads of the user
    older than a day (abandoned at a conflict dialog) are removed on the way."""
    key = upload_key(user_id)
    storage.put_file(key, path)
    cutoff = datetime.now(UTC).timestamp() - UPLOAD_TTL_SECONDS
    for old in storage.list(f"imports/{user_id}"):
        stamp = old.rsplit("/", 1)[-1].split("-", 1)[0]
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
        if when < cutoff and old != key:
            storage.delete(old)
    return key


def open_source(
    storage: Storage, user_id: str, *, zip_key: str | None, document_id: str | None
) -> AbstractContextManager[ImportSource]:
    """The import source a request names (its ZIP checked), for planning."""

    @contextmanager
    def opened() -> Iterator[ImportSource]:
        if zip_key is not None:
            if not zip_key.startswith((f"imports/{user_id}/", f"exports/{user_id}/")):
                raise InvalidInputError(
                    f"{zip_key!r} is not one of your uploads or exports.", "Upload the ZIP."
                )
            try:
                with storage.open_read(zip_key) as fh:
                    source = ZipSource(fh, zip_key.rsplit("/", 1)[-1])
                    try:
                        yield source
                    finally:
                        source.close()
            except FileNotFoundError:
                raise DocumentNotFoundError(
                    f"There is no upload {zip_key}.", "Upload the ZIP again."
                ) from None
        else:
            if document_id is None:
                raise InvalidInputError("Name a ZIP or a document folder.", "Give one source.")
            yield FolderSource(storage, user_id, document_id)

    return opened()


def request_import(
    store: SqlJobStore,
    storage: Storage,
    user_id: str,
    *,
    zip_key: str | None = None,
    document_id: str | None = None,
    strategy: Strategy | None = None,
    regenerate_embeddings: bool = False,
    reprocess_connections: bool = False,
    delete_source: bool = False,
) -> tuple[Any, ImportPlan]:
    """Plan an import and queue its ``import_document`` job. With a conflict and no
    strategy no job is created: :class:`ImportConflictError` carries the report."""
    from rhizome.jobs.client import enqueue

    with open_source(storage, user_id, zip_key=zip_key, document_id=document_id) as source:
        plan = plan_import(store, source, user_id, strategy)  # every JSON file parsed
    if plan.report is not None and strategy is None:
        raise ImportConflictError(plan.report)
    data: dict[str, Any] = {
        "strategy": strategy,
        "regenerate_embeddings": regenerate_embeddings,
        "reprocess_connections": reprocess_connections,
        "delete_source": delete_source,
    }
    if zip_key is not None:
        data["zip_key"] = zip_key
        entity: tuple[str | None, str | None] = (None, None)
    else:
        assert document_id is not None
        data["document_id"] = _uuid(document_id)
        entity = ("document", data["document_id"])
    [job] = enqueue(
        store,
        "import_document",
        data,
        user_id=user_id,
        entity_type=entity[0],
        entity_id=entity[1],
    )
    return job, plan


def request_export(
    store: SqlJobStore,
    user_id: str,
    document_ids: Sequence[str] | None,
    *,
    connections: bool = True,
    highlights: bool = True,
    sync_storage: bool = False,
) -> Any:
    """Queue an ``export_documents`` job (``document_ids`` None: the whole library)."""
    from rhizome.jobs.client import enqueue

    library = Library(store)
    ids = [library.get_document(d, user_id).id for d in document_ids] if document_ids else None
    if ids is None and not library.list_documents(user_id, status="ready", limit=1):
        raise InvalidInputError(
            "There is nothing to export: the library has no ready documents.",
            "Add documents and wait for their processing to finish.",
        )
    [job] = enqueue(
        store,
        "export_documents",
        {
            "document_ids": ids,
            "include_connections": connections,
            "include_highlights": highlights,
            "sync_storage": sync_storage,
        },
        user_id=user_id,
    )
    return job
