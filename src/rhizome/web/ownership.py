"""What users may enqueue through ``POST /api/jobs``, and the ownership check of every
input that names something (a document, a chunk, a highlight, a connection, a job or a
storage key).

A job type says whether users may enqueue it (``public``) and which input fields name
things they must own (``owned``: field → kind); see :class:`rhizome.jobs.registry.JobType`.
Internal types (``process_document`` with its ``source_key``, ``import_document``) are
enqueued only by the server's own routes (uploads, imports), which choose those inputs
themselves. The handlers check ownership again when they run (defence in depth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rhizome.errors import ForbiddenError, InvalidInputError, NotFoundError
from rhizome.jobs.registry import JobType, Registry
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.highlights import Highlights

STORAGE_AREAS = ("documents", "imports", "exports", "readwise")
"""Storage folders that belong to a user: ``<area>/<user>/…``."""

Check = Callable[[SqlJobStore, str, str], None]


def _document(store: SqlJobStore, value: str, user: str) -> None:
    Library(store).get_document(value, user)


def _job(store: SqlJobStore, value: str, user: str) -> None:
    store.get(value, user)


def _highlight(store: SqlJobStore, value: str, user: str) -> None:
    Highlights(store).get(value, user)


def _connection(store: SqlJobStore, value: str, user: str) -> None:
    from rhizome.library.connections import Curation

    Curation(store).get(value, user)


def _chunk(store: SqlJobStore, value: str, user: str) -> None:
    if not Library(store).owns_chunk(value, user):
        raise NotFoundError(f"No chunk with id {value}.", "Give a chunk of your documents.")


def check_storage_key(key: str, user: str) -> None:
    """A storage key the user may name: under one of its own folders, nothing that climbs
    out of it."""
    parts = key.split("/")
    if (
        len(parts) < 3
        or parts[0] not in STORAGE_AREAS
        or parts[1] != user
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in key
        or "\x00" in key
    ):
        raise ForbiddenError(
            f"{key!r} is not in your storage folders.",
            "Name a file under one of your folders: "
            + ", ".join(f"{area}/<you>/" for area in STORAGE_AREAS)
            + ".",
        )


def _storage_key(store: SqlJobStore, value: str, user: str) -> None:
    check_storage_key(value, user)


CHECKS: dict[str, Check] = {
    "document": _document,
    "job": _job,
    "chunk": _chunk,
    "highlight": _highlight,
    "connection": _connection,
    "storage_key": _storage_key,
}


def check_owned(
    store: SqlJobStore, user: str, owned: Mapping[str, str], data: Mapping[str, Any]
) -> None:
    """Every ``owned`` input field names something the user owns (a list: every item);
    raises NotFoundError (404: nothing of the user's has that id) or ForbiddenError."""
    for name, kind in owned.items():
        check = CHECKS.get(kind)
        if check is None:  # fail closed: an input we cannot check is not accepted
            raise ForbiddenError(
                f"The API cannot check inputs of kind {kind!r} ({name}).",
                "Declare owned kinds among: " + ", ".join(CHECKS) + ".",
            )
        value = data.get(name)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            if not isinstance(item, str):
                raise InvalidInputError(f"{name} must name a {kind} by its id.")
            check(store, item, user)


def check_enqueue(
    registry: Registry, store: SqlJobStore, user: str, job_type: str, data: Mapping[str, Any]
) -> JobType:
    """What ``POST /api/jobs`` checks before it enqueues: the type is public, its input is
    valid, and the input names only things the user owns."""
    jt = registry.get(job_type)
    if not jt.public:
        raise ForbiddenError(
            f"{job_type} jobs are started by the server itself, not through POST /api/jobs.",
            "Add documents with POST /api/documents (or /url, /text) and import with "
            "POST /api/imports; they queue these jobs for you.",
        )
    model = jt.validate_input(dict(data))
    check_owned(store, user, jt.owned, model.model_dump())
    return jt
