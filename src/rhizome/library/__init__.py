"""The library: documents, chunks, connections and highlights, in the job store's database.

Importing this package changes nothing elsewhere. Its schema and its parts of the admin
actions are plain values that :class:`rhizome.app.App` hands to the jobs core:
``open_store(url, migrations=[MIGRATIONS])`` and ``Admin(..., hooks=[ADMIN_HOOKS])``.
"""

from rhizome.jobs.store import MigrationSet
from rhizome.library.admin import ADMIN_HOOKS
from rhizome.library.model import Chunk, Connection, Document
from rhizome.library.repo import Library

MIGRATIONS = MigrationSet("library", "rhizome.library")
"""The library's tables (``sql/<dialect>/migrations`` of this package)."""

__all__ = ["ADMIN_HOOKS", "MIGRATIONS", "Chunk", "Connection", "Document", "Library"]
