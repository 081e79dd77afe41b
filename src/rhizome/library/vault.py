"""An Obsidian vault: the user's settings, safe paths inside it, the notes the integration
writes, and the sync state of each note.

Layout (everything inside ``<vault>/<sub-folder>/``, default sub-folder ``Rhizome``)::

    Documents/<title>/<title>.md                 content.md with YAML frontmatter
    Documents/<title>/<title> - Highlights.md    one callout per highlight
    Documents/<title>/<title> - Connections.md   by engine, strongest first
    Documents/<title>/.rhizome/                  chunks.json, metadata.json,
                                                 highlights.json, connections.json

Titles become file names through :func:`note_name` (the same name for the folder and the
note; a second document with the same name gets a stable suffix, its id's first 8
characters). Paths are checked on every access: a path with ``..``, an absolute path or
a symlink that leads outside ``<vault>/<sub-folder>`` is refused (:class:`UnsafePathError`).

The sync state (``obsidian_notes``, one row per note) keeps the note's path, its document,
the hash of the note file and of its body (= ``content.md``) at the last sync, and the
library side's signature then, so that a sync finds changed notes by hash (and by file
size and modification time first: unchanged notes are not even read).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import parse_time
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries

DEFAULT_SUBFOLDER = "Rhizome"
DOCUMENTS = "Documents"
META_FOLDER = ".rhizome"
HIGHLIGHTS_SUFFIX = " - Highlights"
CONNECTIONS_SUFFIX = " - Connections"
MAX_NAME_BYTES = 100
NOTE_STATUSES = ("synced", "conflict", "vault_deleted", "pending", "error")

_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|#^\[\]]')
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)
_SEGMENT = re.compile(r'^[^\x00-\x1f\x7f/\\:*?"<>|]+$')


class UnsafePathError(InvalidInputError):
    default_hint = (
        "Everything Rhizome writes stays inside <vault>/<sub-folder>/: remove the symlink "
        "or the '..' that leads outside, or choose another sub-folder."
    )


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


# --- names ------------------------------------------------------------------------------------


def note_name(title: str | None) -> str:
    """A document title as a file and folder name that every OS and Obsidian accept:
    no path separators, no ``:*?"<>|#^[]``, no control characters, no leading dots, no
    reserved device names, at most 100 bytes. Never empty (``Untitled``)."""
    name = unicodedata.normalize("NFC", title or "")
    name = _FORBIDDEN.sub(" ", name)
    name = " ".join(name.split()).strip(" .")
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[:-1]
    name = name.rstrip(" .")
    if not name:
        name = "Untitled"
    if name.split(".", 1)[0].strip().lower() in _RESERVED:
        name = f"{name}_"
    return name


def suffixed(name: str, document_id: str) -> str:
    """The stable name of a document whose plain name is taken by another one."""
    return f"{name} ({document_id[:8]})"


def note_paths(name: str) -> dict[str, str]:
    """The paths (relative to ``<vault>/<sub-folder>``) of a document's files."""
    folder = f"{DOCUMENTS}/{name}"
    return {
        "folder": folder,
        "note": f"{folder}/{name}.md",
        "highlights": f"{folder}/{name}{HIGHLIGHTS_SUFFIX}.md",
        "connections": f"{folder}/{name}{CONNECTIONS_SUFFIX}.md",
        "meta": f"{folder}/{META_FOLDER}",
    }


def name_of_note(note_path: str) -> str:
    return PurePosixPath(note_path).stem


# --- settings ---------------------------------------------------------------------------------


@dataclass
class VaultSettings:
    user_id: str
    vault_path: str
    subfolder: str = DEFAULT_SUBFOLDER
    vault_name: str | None = None
    export_highlights: bool = True
    export_connections: bool = True
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        """The vault's name in Obsidian (its folder's name unless set)."""
        return self.vault_name or Path(self.vault_path).name

    def to_dict(self) -> dict[str, Any]:
        return {
            "vault_path": self.vault_path,
            "subfolder": self.subfolder,
            "vault_name": self.name,
            "export_highlights": self.export_highlights,
            "export_connections": self.export_connections,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VaultSettings:
        return cls(
            user_id=row["user_id"],
            vault_path=row["vault_path"],
            subfolder=row["subfolder"],
            vault_name=row.get("vault_name"),
            export_highlights=_bool(row.get("export_highlights")),
            export_connections=_bool(row.get("export_connections")),
            updated_at=parse_time(row.get("updated_at")),
        )


def _bool(value: Any) -> bool:
    return bool(value) and value not in ("0", "false")


def clean_vault_path(value: str) -> str:
    """An absolute vault folder path without ``..`` segments (normalized)."""
    text = (value or "").strip()
    if not text:
        raise InvalidInputError("Give the vault folder.", "For example: ~/Obsidian/My vault")
    if "\x00" in text or len(text) > 1000:
        raise InvalidInputError("That is not a folder path.", "Give the vault folder's path.")
    text = os.path.expanduser(text)
    if not os.path.isabs(text):
        raise InvalidInputError(
            f"The vault folder must be an absolute path, not {value!r}.",
            "Give the full path, e.g. /home/me/Obsidian/My vault.",
        )
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise UnsafePathError(
            f"The vault path {value!r} contains '..'.", "Give the folder's plain absolute path."
        )
    return os.path.normpath(text)


def clean_subfolder(value: str | None) -> str:
    """A relative sub-folder of the vault (``Rhizome`` by default), each part a plain
    name: no ``..``, no absolute path, no hidden folder."""
    text = (value if value is not None else DEFAULT_SUBFOLDER).strip().replace("\\", "/")
    text = text.strip("/")
    if not text:
        return DEFAULT_SUBFOLDER
    if value and (value.strip().startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value)):
        raise UnsafePathError(
            f"The sub-folder {value!r} is an absolute path.",
            "Give a folder inside the vault, e.g. Rhizome or Notes/Rhizome.",
        )
    parts = text.split("/")
    if len(parts) > 8 or len(text) > 300:
        raise InvalidInputError(f"The sub-folder {value!r} is too deep.", "Use a shorter path.")
    for part in parts:
        if part in ("", ".", "..") or part.startswith(".") or not _SEGMENT.match(part):
            raise UnsafePathError(
                f"The sub-folder {value!r} is not a plain folder inside the vault.",
                "Use names without '..', leading dots or the characters \\ : * ? \" < > |.",
            )
    return "/".join(parts)


# --- the vault on disk ------------------------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Vault:
    """Safe access to ``<vault>/<sub-folder>`` on this machine."""

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.vault = Path(clean_vault_path(settings.vault_path))
        self.subfolder = clean_subfolder(settings.subfolder)
        self.base = self.vault / self.subfolder
        self._real_base: str | None = None

    def check(self, *, create: bool = True) -> None:
        """The vault folder exists here and is an Obsidian vault (a ``.obsidian`` folder:
        so no other folder of the machine can be written into); the sub-folder is inside
        it (created if missing)."""
        if not self.vault.is_dir():
            raise InvalidInputError(
                f"The Obsidian vault folder {self.vault} does not exist on this machine.",
                "Run the vault jobs on the machine that holds the vault (`rhizome worker "
                "--types obsidian_export,obsidian_sync` there), or fix the path with "
                "`rhizome obsidian config --vault PATH`.",
            )
        if not (self.vault / ".obsidian").is_dir():
            raise InvalidInputError(
                f"{self.vault} is not an Obsidian vault (it has no .obsidian folder).",
                "Give the folder of an Obsidian vault (open a folder as a vault in Obsidian "
                "once, and it gets its .obsidian folder).",
            )
        real_vault = os.path.realpath(self.vault)
        at = Path(real_vault)
        for part in self.subfolder.split("/"):
            at = at / part
            if at.is_symlink() or at.exists():
                real = os.path.realpath(at)
                if not _inside(real, real_vault):
                    raise UnsafePathError(
                        f"The sub-folder {self.subfolder} leads outside the vault (to {real})."
                    )
                at = Path(real)
                if not at.is_dir():
                    raise UnsafePathError(f"{at} is not a folder.")
            elif create:
                at.mkdir()
            else:
                break
        self._real_base = os.path.realpath(self.base) if self.base.exists() else None

    @property
    def real_base(self) -> str:
        if self._real_base is None:
            self.check()
        assert self._real_base is not None
        return self._real_base

    def _rel(self, rel: str) -> PurePosixPath:
        if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
            raise UnsafePathError(f"{rel!r} is not a path inside the vault's sub-folder.")
        path = PurePosixPath(rel)
        if path.is_absolute() or any(p in ("..", "") for p in path.parts):
            raise UnsafePathError(f"{rel!r} leaves the vault's sub-folder.")
        return path

    def resolve(self, rel: str) -> Path:
        """The absolute path of ``rel``; refused when it (or a folder on the way) is a
        symlink that leads outside ``<vault>/<sub-folder>``. Each component below the
        sub-folder is looked at (``lstat``); only a symlink costs a full resolution."""
        parts = self._rel(rel).parts
        at = self.real_base
        for part in parts:
            at = os.path.join(at, part)
            try:
                mode = os.lstat(at).st_mode
            except (FileNotFoundError, NotADirectoryError):
                break  # the rest does not exist yet: nothing to follow
            if stat.S_ISLNK(mode):
                real = os.path.realpath(at)
                if not _inside(real, self.real_base):
                    raise UnsafePathError(
                        f"{rel} leads outside the vault's sub-folder (to {real})."
                    )
        return Path(self.real_base).joinpath(*parts)

    def ensure_folder(self, rel: str) -> Path:
        path = self.resolve(rel)
        path.mkdir(parents=True, exist_ok=True)
        self.resolve(rel)  # a folder made meanwhile must not lead outside either
        return path

    def stat(self, rel: str) -> tuple[int, int] | None:
        """``(mtime_ns, size)`` of a note, or None when it is missing."""
        try:
            path = self.resolve(rel)
            st = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        return st.st_mtime_ns, st.st_size

    def read(self, rel: str) -> bytes | None:
        try:
            return self.resolve(rel).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def write(self, rel: str, data: bytes) -> bool:
        """Write ``data`` unless the file already holds it; True when written. Atomic
        (a temporary file in the same folder, then a rename)."""
        path = self.resolve(rel)
        if path.is_file() and sha256(path.read_bytes()) == sha256(data):
            return False
        self.ensure_folder(str(PurePosixPath(rel).parent))
        # a name of its own: two jobs of one worker may write the same note at once
        tmp = path.with_name(f".{path.name}.rhizome-{os.getpid()}-{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def listdir(self, rel: str) -> list[os.DirEntry[str]]:
        try:
            path = self.resolve(rel)
            with os.scandir(path) as it:
                return list(it)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def vault_link(self) -> str:
        """``obsidian://open?vault=…``: the vault in Obsidian."""
        return f"obsidian://open?vault={quote(self.settings.name, safe='')}"

    def link(self, rel: str) -> str:
        """``obsidian://open?vault=…&file=…`` for a note (path without ``.md``)."""
        file = f"{self.subfolder}/{rel}"
        if file.endswith(".md"):
            file = file[:-3]
        vault = quote(self.settings.name, safe="")
        return f"obsidian://open?vault={vault}&file={quote(file, safe='')}"


# --- notes --------------------------------------------------------------------------------------


def _yaml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)  # a double-quoted YAML scalar


def frontmatter(fields: dict[str, Any]) -> str:
    lines = [f"{k}: {_yaml_value(v)}" for k, v in fields.items()]
    return "---\n" + "\n".join(lines) + "\n---\n"


_FM_END = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)


def split_note(raw: str) -> tuple[dict[str, Any], str]:
    """A note's frontmatter (a small YAML subset: ``key: value``, flow lists ``[a, b]``
    and block lists) and its body."""
    text = raw[1:] if raw.startswith("\ufeff") else raw
    if not (text.startswith("---\n") or text.startswith("---\r\n")):
        return {}, raw
    first = text.index("\n") + 1
    end = _FM_END.search(text, first)
    if end is None:
        return {}, raw
    block = text[first : end.start()]
    after = end.end()
    if text[after : after + 2] == "\r\n":
        after += 2
    elif text[after : after + 1] == "\n":
        after += 1
    return _parse_yaml(block), text[after:]


def _scalar(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            return text.strip('"')
    if text.startswith("'") and text.endswith("'") and len(text) > 1:
        return text[1:-1].replace("''", "'")
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        if not inner:
            return []
        try:
            loaded = json.loads(text)
            if isinstance(loaded, list):
                return loaded
        except ValueError:
            pass
        return [_scalar(p) for p in inner.split(",") if p.strip()]
    if text in ("null", "~"):
        return None
    return text


def _parse_yaml(block: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    key: str | None = None
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = re.match(r"^\s+-\s*(.*)$", line) or re.match(r"^-\s+(.*)$", line)
        if item and key is not None:
            if not isinstance(out.get(key), list):
                out[key] = []
            out[key].append(_scalar(item.group(1)))
            continue
        pair = re.match(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$", line)
        if pair:
            key = pair.group(1)
            out[key] = _scalar(pair.group(2))
    return out


def note_tags(fields: dict[str, Any]) -> list[str]:
    tags = fields.get("tags")
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    if not isinstance(tags, list):
        return []
    return [str(t).lstrip("#").strip() for t in tags if t is not None and str(t).strip()][:50]


def render_note(
    *,
    document_id: str,
    title: str,
    author: str | None,
    source: str | None,
    tags: Sequence[str],
    content: str,
) -> bytes:
    """The main note: ``content.md`` with YAML frontmatter."""
    head = frontmatter(
        {
            "id": document_id,
            "title": title,
            "author": author,
            "source": source,
            "tags": list(tags),
            "rhizome_hash": sha256(content),
        }
    )
    return (head + content).encode("utf-8")


CALLOUTS = {
    "yellow": "quote",
    "green": "success",
    "blue": "info",
    "red": "danger",
    "orange": "warning",
    "pink": "tip",
    "purple": "example",
}
"""Highlight colour → Obsidian callout type (others: ``quote``)."""


def _quote(text: str, limit: int | None = None) -> list[str]:
    text = text.strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return [f"> {line}" if line.strip() else ">" for line in text.splitlines()] or [">"]


def _heading_link(name: str, heading: Sequence[str]) -> str:
    if heading:
        last = re.sub(r"[#^\[\]|]", " ", heading[-1]).strip()
        if last:
            return f"[[{name}#{last}|{last}]]"
    return f"[[{name}]]"


def render_highlights(
    *,
    name: str,
    document_id: str,
    title: str,
    highlights: Sequence[dict[str, Any]],
    headings: dict[str, list[str]],
) -> bytes:
    """One callout per highlight (colour → callout type), its note and tags, and a link
    back to the passage (the heading of the chunk it is in) with its offsets."""
    lines = [
        frontmatter({"rhizome_id": document_id, "rhizome_generated": "highlights"}).rstrip("\n"),
        f"# Highlights of [[{name}]]",
        "",
        f"*Written by Rhizome from the library; edits here are replaced at the next "
        f"export. {len(highlights)} highlight{'s' if len(highlights) != 1 else ''}.*",
        "",
    ]
    for h in highlights:
        callout = CALLOUTS.get(str(h.get("color") or "yellow"), "quote")
        status = h.get("status") or "matched"
        label = "Highlight" if status == "matched" else f"Highlight ({status.replace('_', ' ')})"
        lines.append(f"> [!{callout}] {label}")
        lines.extend(_quote(str(h.get("text") or "")))
        if h.get("note"):
            lines.append(">")
            lines.extend(f"> **Note:** {line}" for line in str(h["note"]).splitlines())
        tags = [str(t).replace(" ", "-") for t in (h.get("tags") or [])]
        if tags:
            lines.append(">")
            lines.append("> " + " ".join(f"#{t}" for t in tags))
        chunk_ids = h.get("chunk_ids") or []
        heading = headings.get(chunk_ids[0], []) if chunk_ids else []
        where = f"offsets {h['start']}-{h['end']}" if h.get("start") is not None else "not placed"
        lines.append(">")
        lines.append(f"> {_heading_link(name, heading)} · {where}")
        lines.append(f"%% rhizome:highlight {h.get('id')} %%")
        lines.append("")
    return ("\n".join(lines).rstrip("\n") + "\n").encode("utf-8")


ENGINE_TITLES = {
    "semantic": "Semantic similarity",
    "contradiction": "Contradictions",
    "thematic": "Thematic bridges",
}


def render_connections(
    *,
    name: str,
    document_id: str,
    connections: Sequence[dict[str, Any]],
    names: dict[str, str],
) -> bytes:
    """The document's connections grouped by the engine that scored each highest,
    strongest first: a wikilink to the other document's note, a quote of the other
    passage, the score, and a mark for validated ones."""
    groups: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINE_TITLES}
    for c in connections:
        scores = {k: float(v) for k, v in (c.get("engine_scores") or {}).items()}
        engine = max(scores, key=lambda k: scores[k]) if scores else "semantic"
        groups.setdefault(engine, []).append(c)
    lines = [
        frontmatter({"rhizome_id": document_id, "rhizome_generated": "connections"}).rstrip("\n"),
        f"# Connections of [[{name}]]",
        "",
        f"*Written by Rhizome from the library; edits here are replaced at the next "
        f"export. {len(connections)} connection{'s' if len(connections) != 1 else ''}.*",
        "",
    ]
    for engine, items in groups.items():
        if not items:
            continue
        lines.append(f"## {ENGINE_TITLES.get(engine, engine.title())}")
        lines.append("")
        for c in sorted(items, key=lambda c: -float(c.get("combined_score") or 0)):
            mine = c.get("source_document_id") == document_id
            other_doc = str(c["target_document_id"] if mine else c["source_document_id"])
            other_text = str(c.get("target_text") if mine else c.get("source_text") or "")
            other_name = names.get(other_doc) or note_name(
                str(c.get("target_title") if mine else c.get("source_title"))
            )
            marks = []
            if c.get("validated") or c.get("user_validated"):
                marks.append("✓ validated")
            if c.get("starred"):
                marks.append("★ starred")
            if c.get("remap_status") in ("review", "lost"):
                marks.append(f"remapped: {c['remap_status']}")
            score = float(c.get("combined_score") or 0)
            extra = f" · {' · '.join(marks)}" if marks else ""
            lines.append(f"- [[{other_name}]] · score {score:.2f}{extra}")
            lines.extend("  " + q for q in _quote(other_text, 400))
            lines.append("")
    return ("\n".join(lines).rstrip("\n") + "\n").encode("utf-8")


def json_file(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=str).encode(
        "utf-8"
    )


# --- the sync state ----------------------------------------------------------------------------


@dataclass
class NoteState:
    user_id: str
    note_path: str
    document_id: str | None
    status: str = "synced"
    vault_hash: str | None = None
    vault_mtime_ns: int | None = None
    vault_size: int | None = None
    body_hash: str | None = None
    library_sig: str | None = None
    derived_sig: str | None = None
    message: str | None = None
    last_job_id: str | None = None
    last_item: int | None = None
    last_result: dict[str, Any] | None = None
    synced_at: datetime | None = None
    document: dict[str, Any] = field(default_factory=dict)
    """Columns of the document (title, author, status, content_changed_at, created_at)
    when read with it."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> NoteState:
        result = row.get("last_result")
        if isinstance(result, str | bytes):
            result = json.loads(result)
        doc_id = row.get("document_id")
        return cls(
            user_id=row["user_id"],
            note_path=row["note_path"],
            document_id=str(doc_id) if doc_id is not None else None,
            status=row.get("status") or "synced",
            vault_hash=row.get("vault_hash"),
            vault_mtime_ns=_int(row.get("vault_mtime_ns")),
            vault_size=_int(row.get("vault_size")),
            body_hash=row.get("body_hash"),
            library_sig=row.get("library_sig"),
            derived_sig=row.get("derived_sig"),
            message=row.get("message"),
            last_job_id=row.get("last_job_id"),
            last_item=_int(row.get("last_item")),
            last_result=result if isinstance(result, dict) else None,
            synced_at=parse_time(row.get("synced_at")),
            document={
                k: row.get(k)
                for k in ("title", "author", "doc_status", "content_changed_at", "doc_created_at")
                if k in row
            },
        )

    def row(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "note_path": self.note_path,
            "document_id": self.document_id,
            "status": self.status,
            "vault_hash": self.vault_hash,
            "vault_mtime_ns": self.vault_mtime_ns,
            "vault_size": self.vault_size,
            "body_hash": self.body_hash,
            "library_sig": self.library_sig,
            "derived_sig": self.derived_sig,
            "message": self.message,
            "last_job_id": self.last_job_id,
            "last_item": self.last_item,
            "last_result": json.dumps(self.last_result) if self.last_result is not None else None,
            "synced_at": self.synced_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "note_path": self.note_path,
            "document_id": self.document_id,
            "title": self.document.get("title"),
            "status": self.status,
            "message": self.message,
            "synced_at": self.synced_at.isoformat() if self.synced_at else None,
            "last_result": self.last_result,
        }


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def library_sig(row: dict[str, Any]) -> str:
    """The library side of a document as far as its main note goes: when its content
    last changed (any re-chunking), its title and author. Read from the documents row,
    without touching storage."""
    changed = row.get("content_changed_at") or row.get("doc_created_at") or row.get("created_at")
    when = parse_time(changed)
    stamp = when.isoformat() if when else str(changed)
    return sha256(f"{stamp}|{row.get('title') or ''}|{row.get('author') or ''}")[:32]


class VaultRepo:
    """Vault settings and the sync state of notes (every call scoped by the user)."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self.queries = load_queries(store.dialect, "rhizome.library")

    def settings(self, user_id: str) -> VaultSettings | None:
        with self.store.session(self.queries) as s:
            row = s.one("vault_get_settings", {"user_id": user_id})
        return VaultSettings.from_row(row) if row else None

    def require_settings(self, user_id: str) -> VaultSettings:
        found = self.settings(user_id)
        if found is None:
            raise InvalidInputError(
                "No Obsidian vault is configured.",
                "Set it first: `rhizome obsidian config --vault PATH` (or the Integrations page).",
            )
        return found

    def save_settings(
        self,
        user_id: str,
        *,
        vault_path: str,
        subfolder: str | None = None,
        vault_name: str | None = None,
        export_highlights: bool = True,
        export_connections: bool = True,
        check: bool = True,
    ) -> VaultSettings:
        """Store the user's vault settings. With ``check`` the vault folder must exist on
        this machine. A different vault or sub-folder forgets the sync state of the old
        one (its notes stay where they are)."""
        path = clean_vault_path(vault_path)
        sub = clean_subfolder(subfolder)
        name = (vault_name or "").strip() or None
        if name is not None and (len(name) > 200 or "\x00" in name):
            raise InvalidInputError("That vault name is too long.", "Use the vault's name.")
        if check:
            Vault(VaultSettings(user_id, path, sub, name)).check(create=False)
        with self.store.transaction(self.queries) as tx:
            old = tx.one("vault_get_settings", {"user_id": user_id})
            if old and (old["vault_path"] != path or old["subfolder"] != sub):
                tx.run("vault_forget_notes", {"user_id": user_id})
            tx.run(
                "vault_put_settings",
                {
                    "user_id": user_id,
                    "vault_path": path,
                    "subfolder": sub,
                    "vault_name": name,
                    "export_highlights": export_highlights,
                    "export_connections": export_connections,
                },
            )
        saved = self.settings(user_id)
        assert saved is not None
        return saved

    def notes(self, user_id: str) -> list[NoteState]:
        with self.store.session(self.queries) as s:
            rows = s.all("vault_notes", {"user_id": user_id})
        return [NoteState.from_row(r) for r in rows]

    def conflicts(self, user_id: str) -> list[NoteState]:
        """The notes in conflict (at most 1,000)."""
        with self.store.session(self.queries) as s:
            rows = s.all("vault_conflicts", {"user_id": user_id})
        return [NoteState.from_row(r) for r in rows]

    def note_of_document(self, user_id: str, document_id: str) -> NoteState | None:
        with self.store.session(self.queries) as s:
            row = s.one("vault_note_of_document", {"user_id": user_id, "document_id": document_id})
        return NoteState.from_row(row) if row else None

    def note_at(self, user_id: str, note_path: str) -> NoteState | None:
        with self.store.session(self.queries) as s:
            row = s.one("vault_note_at", {"user_id": user_id, "note_path": note_path})
        return NoteState.from_row(row) if row else None

    def taken_names(self, user_id: str) -> dict[str, str | None]:
        """``{lower-case note folder name: document id}`` of the user's notes."""
        with self.store.session(self.queries) as s:
            rows = s.all("vault_note_paths", {"user_id": user_id})
        out: dict[str, str | None] = {}
        for r in rows:
            doc = r.get("document_id")
            out[name_of_note(r["note_path"]).lower()] = str(doc) if doc is not None else None
        return out

    def save(self, state: NoteState, *, replaces: str | None = None) -> None:
        """Insert or update the state of ``state.note_path`` (``replaces``: the path the
        document's note had before, which is dropped in the same transaction)."""
        with self.store.transaction(self.queries) as tx:
            save_note_state(tx, state, replaces=replaces)

    def document_row(self, user_id: str, document_id: str) -> dict[str, Any] | None:
        """The document's columns that :func:`library_sig` reads."""
        with self.store.session(self.queries) as s:
            return s.one("vault_document_row", {"user_id": user_id, "document_id": document_id})

    def job_results(self, user_id: str, job_id: str) -> list[NoteState]:
        with self.store.session(self.queries) as s:
            rows = s.all("vault_job_results", {"user_id": user_id, "job_id": job_id})
        return [NoteState.from_row(r) for r in rows]

    def counts(self, user_id: str) -> dict[str, int]:
        with self.store.session(self.queries) as s:
            rows = s.all("vault_note_counts", {"user_id": user_id})
        return {r["status"]: int(r["n"]) for r in rows}

    def derived_sigs(self, user_id: str, document_id: str | None = None) -> dict[str, str]:
        """Per document, a signature of its highlights and connections (what the
        Highlights and Connections notes show)."""
        sigs: dict[str, list[str]] = {}
        params = {"user_id": user_id, "document_id": document_id}
        with self.store.session(self.queries) as s:
            for query in ("vault_highlight_sigs", "vault_connection_sigs"):
                for r in s.all(query, params):
                    doc = str(r["document_id"])
                    sigs.setdefault(doc, []).append(f"{query}:{r['n']}:{r['latest']}")
        return {doc: sha256("|".join(sorted(parts)))[:32] for doc, parts in sigs.items()}


def save_note_state(tx: Any, state: NoteState, *, replaces: str | None = None) -> None:
    """:meth:`VaultRepo.save` inside a caller's transaction."""
    if replaces and replaces != state.note_path:
        tx.run("vault_delete_note", {"user_id": state.user_id, "note_path": replaces})
    if state.document_id is not None:
        tx.run(
            "vault_release_document",
            {
                "user_id": state.user_id,
                "document_id": state.document_id,
                "note_path": state.note_path,
            },
        )
    tx.run("vault_upsert_note", state.row())
