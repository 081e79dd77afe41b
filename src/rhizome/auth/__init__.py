"""Users, roles and API tokens.

Like the library, this component keeps its tables in the job store's database and hands
its schema to :func:`rhizome.jobs.store.open_store` through :class:`rhizome.app.App`
(``MIGRATIONS``); importing it changes nothing elsewhere.
"""

from rhizome.auth.users import (
    ADMIN,
    DEFAULT_USER,
    ROLES,
    USER,
    USER_PATTERN,
    Identity,
    Issued,
    Role,
    UserNotFoundError,
    Users,
    session_value,
    sha256_hex,
)
from rhizome.jobs.store import MigrationSet

MIGRATIONS = MigrationSet("auth", "rhizome.auth")
"""The ``users`` and ``api_tokens`` tables (``sql/<dialect>/migrations`` of this package)."""

__all__ = [
    "ADMIN",
    "DEFAULT_USER",
    "MIGRATIONS",
    "ROLES",
    "USER",
    "USER_PATTERN",
    "Identity",
    "Issued",
    "Role",
    "UserNotFoundError",
    "Users",
    "session_value",
    "sha256_hex",
]
