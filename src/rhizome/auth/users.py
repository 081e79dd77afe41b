"""Users, roles and API tokens, in the job store's database (tables ``users`` and
``api_tokens``; SQL as named queries in ``sql/<dialect>/users.sql``).

A token is ``rhz_`` and 43 random URL-safe characters, shown once when it is issued; the
database keeps only its SHA-256 (and the SHA-256 of the login cookie derived from it), so
a copy of the database lets nobody in. Looking a token up by its hash and comparing the
hash with :func:`hmac.compare_digest` leaks nothing about the token through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from rhizome.errors import InvalidInputError, NotFoundError
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries

Role = Literal["admin", "user"]
ADMIN: Role = "admin"
USER: Role = "user"
ROLES: tuple[Role, ...] = (ADMIN, USER)

USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$"
"""What a user name may look like (it is the ``user_id`` of every row and a storage folder)."""
DEFAULT_USER = "local"
"""The user of a laptop install: no token, no users, bound to loopback; an admin."""
TOKEN_PREFIX = "rhz_"
TOUCH_EVERY = timedelta(minutes=5)
"""``last_used_at`` is written at most this often per token (not on every request)."""

_USER_RE = re.compile(USER_PATTERN)


class UserNotFoundError(NotFoundError):
    default_hint = "List users with `rhizome users list`."


@dataclass(frozen=True)
class Identity:
    """Who a request (or a command) acts as."""

    user: str
    role: Role
    via: str = "local"
    """``local`` (loopback, no token, no users), ``master`` (RHIZOME_API_TOKEN), ``token``
    (a user's API token), ``cookie`` (the login page's session) or ``proxy`` (named by a
    trusted reverse proxy in X-Rhizome-User)."""

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True)
class Issued:
    """A freshly issued token: the only time the token itself exists outside its holder."""

    user: str
    role: Role
    token_id: str
    token: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "role": self.role,
            "token_id": self.token_id,
            "token": self.token,
        }


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"rhizome-session-v1", hashlib.sha256).hexdigest()


def check_user_name(name: str) -> str:
    if not _USER_RE.match(name):
        raise InvalidInputError(
            f"{name!r} is not a valid user name.",
            "Use 1 to 64 letters, digits and _ . @ + - (starting with a letter or digit).",
        )
    return name


def check_role(role: str) -> Role:
    if role == ADMIN:
        return ADMIN
    if role == USER:
        return USER
    raise InvalidInputError(f"Unknown role {role!r}.", "Use admin or user.")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Users:
    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self.queries = load_queries(store.dialect, "rhizome.auth")

    # --- managing users (the CLI) -------------------------------------------------------------

    def add(self, name: str, role: str = USER, token_name: str | None = None) -> Issued:
        """Create a user with a first token."""
        check_user_name(name)
        checked = check_role(role)
        with self.store.transaction(self.queries) as tx:
            row = tx.one("insert_user", {"id": name, "role": checked})
            if row is None:
                raise InvalidInputError(
                    f"There is already a user {name!r}.",
                    f"Issue another token with `rhizome users token {name}`.",
                )
            return self._issue(tx, name, checked, token_name)

    def issue(self, name: str, token_name: str | None = None) -> Issued:
        """Another token for an existing user."""
        with self.store.transaction(self.queries) as tx:
            user = tx.one("get_user", {"id": name})
            if user is None:
                raise UserNotFoundError(f"There is no user {name!r}.")
            return self._issue(tx, name, check_role(user["role"]), token_name)

    def _issue(self, tx: Any, name: str, role: Role, token_name: str | None) -> Issued:
        token = new_token()
        token_id = "tok_" + secrets.token_hex(6)
        tx.one(
            "insert_token",
            {
                "id": token_id,
                "user_id": name,
                "token_hash": sha256_hex(token),
                "session_hash": sha256_hex(session_value(token)),
                "name": token_name,
            },
        )
        return Issued(name, role, token_id, token)

    def set_role(self, name: str, role: str) -> None:
        with self.store.transaction(self.queries) as tx:
            if tx.one("set_role", {"id": name, "role": check_role(role)}) is None:
                raise UserNotFoundError(f"There is no user {name!r}.")

    def revoke(self, name: str, token_id: str | None = None) -> list[str]:
        """Revoke every token of the user (or one of them); returns the revoked ids."""
        with self.store.transaction(self.queries) as tx:
            if tx.one("get_user", {"id": name}) is None:
                raise UserNotFoundError(f"There is no user {name!r}.")
            rows = tx.all("revoke_user_tokens", {"user_id": name, "token_id": token_id})
        if token_id is not None and not rows:
            raise NotFoundError(
                f"User {name!r} has no active token {token_id!r}.",
                "List them with `rhizome users list --tokens`.",
            )
        return [str(r["id"]) for r in rows]

    def all(self) -> list[dict[str, Any]]:
        with self.store.session(self.queries) as s:
            rows = s.all("list_users")
        return [
            {
                "user": r["id"],
                "role": r["role"],
                "created_at": _time(r["created_at"]),
                "active_tokens": int(r["active_tokens"]),
                "last_used_at": _time(r["last_used_at"]),
            }
            for r in rows
        ]

    def tokens(self, name: str) -> list[dict[str, Any]]:
        with self.store.session(self.queries) as s:
            rows = s.all("list_tokens", {"user_id": name})
        return [
            {
                "id": r["id"],
                "name": r["name"],
                "created_at": _time(r["created_at"]),
                "last_used_at": _time(r["last_used_at"]),
                "revoked_at": _time(r["revoked_at"]),
            }
            for r in rows
        ]

    # --- authenticating (the web server) --------------------------------------------------

    def count(self) -> int:
        """How many users there are (0 when this database has no users table yet)."""
        try:
            with self.store.session(self.queries) as s:
                row = s.one("count_users")
        except Exception as exc:
            if _missing_table(exc):
                return 0
            raise
        return int(row["n"]) if row else 0

    def authenticate(self, token: str) -> Identity | None:
        """The holder of an API token, or None (unknown or revoked)."""
        return self._lookup("token_by_hash", sha256_hex(token), "token")

    def by_session(self, cookie: str) -> Identity | None:
        """The holder of a login cookie (made by :func:`session_value`), or None."""
        return self._lookup("token_by_session", sha256_hex(cookie), "cookie")

    def role_of(self, name: str) -> Role | None:
        try:
            with self.store.session(self.queries) as s:
                row = s.one("get_user", {"id": name})
        except Exception as exc:
            if _missing_table(exc):
                return None
            raise
        return check_role(row["role"]) if row else None

    def _lookup(self, query: str, digest: str, via: str) -> Identity | None:
        try:
            with self.store.session(self.queries) as s:
                row = s.one(query, {"hash": digest})
        except Exception as exc:
            if _missing_table(exc):
                return None
            raise
        if row is None or not hmac.compare_digest(str(row["token_hash"]), digest):
            return None
        self._touch(str(row["id"]))
        return Identity(str(row["user_id"]), check_role(row["role"]), via)

    def _touch(self, token_id: str) -> None:
        now = datetime.now(UTC)
        last = _LAST_TOUCH.get(token_id)
        if last is not None and now - last < TOUCH_EVERY:
            return
        _LAST_TOUCH[token_id] = now
        if len(_LAST_TOUCH) > 10_000:
            _LAST_TOUCH.clear()
        try:
            with self.store.transaction(self.queries) as tx:
                tx.run("touch_token", {"id": token_id})
        except Exception:  # a bookkeeping write never refuses a request
            pass


_LAST_TOUCH: dict[str, datetime] = {}


def _missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return ("no such table" in text or "does not exist" in text) and (
        "users" in text or "api_tokens" in text
    )


def _time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
