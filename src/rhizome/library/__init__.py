"""The library: documents, chunks, connections and highlights, in the job store's database.

Importing this package registers its migrations, so ``open_store`` creates its tables.
"""

from rhizome.jobs.store import register_migrations
from rhizome.library.model import Chunk, Connection, Document
from rhizome.library.repo import Library

register_migrations("library", "rhizome.library")

from rhizome.library import admin as _admin  # noqa: E402,F401  (registers admin hooks)

__all__ = ["Chunk", "Connection", "Document", "Library"]
