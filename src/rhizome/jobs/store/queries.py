"""Loads named SQL queries (``-- name: foo`` blocks) and numbered migrations from files.

A ``-- fragment: bar`` block is a piece of SQL (an expression, a WHERE condition) that
queries of the same dialect folder include as ``{{bar}}``, so that one condition has one
definition; fragments may include fragments. They are not queries themselves.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

_BLOCK = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def parse_queries(text: str) -> dict[str, str]:
    """Split a queries file into ``{name: sql}``; full-line comments are dropped (and so
    are fragments: see :func:`parse_blocks`)."""
    return parse_blocks(text)[0]


def parse_blocks(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Split a queries file into ``({name: sql}, {fragment name: sql})``."""
    blocks: tuple[dict[str, str], dict[str, str]] = ({}, {})
    matches = list(_BLOCK.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end]
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        kind, name = match.group(1), match.group(2)
        found = blocks[0] if kind == "name" else blocks[1]
        if name in found:
            raise ValueError(f"duplicate {'query' if kind == 'name' else kind} name {name!r}")
        found[name] = sql
    return blocks


def expand_fragments(queries: dict[str, str], fragments: dict[str, str]) -> dict[str, str]:
    """Replace every ``{{fragment}}`` in the queries (and in fragments) by its SQL."""

    def expand(sql: str, seen: tuple[str, ...]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in fragments:
                raise ValueError(f"unknown SQL fragment {name!r}")
            if name in seen:
                raise ValueError(f"SQL fragment {name!r} includes itself")
            return expand(fragments[name], (*seen, name))

        return _INCLUDE.sub(one, sql)

    return {name: expand(sql, ()) for name, sql in queries.items()}


def sql_dir(dialect: str, package: str = "rhizome.jobs.store") -> Traversable:
    return resources.files(package).joinpath("sql", dialect)


@cache
def load_queries(dialect: str, package: str = "rhizome.jobs.store") -> dict[str, str]:
    """Every ``*.sql`` file of the dialect folder (not its migrations), merged, with their
    fragments expanded."""
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    files = sorted(
        (f for f in sql_dir(dialect, package).iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    for entry in files:
        named, pieces = parse_blocks(entry.read_text("utf-8"))
        for found, into, what in ((named, queries, "query"), (pieces, fragments, "fragment")):
            for name, sql in found.items():
                if name in into:
                    raise ValueError(f"{what} {name!r} is defined twice in {dialect}/*.sql")
                into[name] = sql
    return expand_fragments(queries, fragments)


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str


def load_migrations(
    dialect: str, component: str = "jobs", package: str = "rhizome.jobs.store"
) -> list[Migration]:
    folder = sql_dir(dialect, package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(
                Migration(component, int(match.group(1)), match.group(2), entry.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations of {component}/{dialect} are not numbered 1..n: {versions}")
    return found


_OPTIONAL = re.compile(
    r"\(\s*(?::(?P<sqlite>\w+)|%\((?P<pg>\w+)\)s(?:::[\w\[\]]+)?)\s+IS\s+NULL\s+OR\s+", re.I
)


def specialize(sql: str, given: Collection[str], optional: Collection[str]) -> str:
    """``sql`` for one shape of its optional conditions: each ``(:p IS NULL OR cond)``
    (PostgreSQL: ``(%(p)s::type IS NULL OR cond)``) with ``p`` in ``optional`` becomes
    ``(cond)`` when ``p`` is in ``given`` and ``(1 = 1)`` when it is not.

    The result means the same for parameters of that shape, but the database sees plain
    conditions: ``j.user_id = :user_id`` can use an index, where ``(:user_id IS NULL OR
    …)`` makes SQLite scan the table and PostgreSQL's generic plans do the same."""
    out: list[str] = []
    pos = 0
    for match in _OPTIONAL.finditer(sql):
        if match.start() < pos:  # inside a condition already rewritten
            continue
        name = match.group("sqlite") or match.group("pg")
        if name not in optional:
            continue
        end = _closing_paren(sql, match.start())
        cond = sql[match.end() : end]
        out.append(sql[pos : match.start()])
        out.append(f"({specialize(cond, given, optional)})" if name in given else "(1 = 1)")
        pos = end + 1
    out.append(sql[pos:])
    return "".join(out)


def _closing_paren(sql: str, start: int) -> int:
    """The index of the parenthesis that closes the one at ``start`` (quotes respected)."""
    depth = 0
    quoted = False
    for i in range(start, len(sql)):
        ch = sql[i]
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in SQL after position {start}")
