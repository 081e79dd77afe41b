"""Loads named SQL queries (``-- name: foo`` blocks) and numbered migrations from files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def parse_queries(text: str) -> dict[str, str]:
    """Split a queries file into ``{name: sql}``; full-line comments are dropped."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end]
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if match.group(1) in queries:
            raise ValueError(f"duplicate query name {match.group(1)!r}")
        queries[match.group(1)] = sql
    return queries


def sql_dir(dialect: str, package: str = "rhizome.jobs.store") -> Traversable:
    return resources.files(package).joinpath("sql", dialect)


@cache
def load_queries(dialect: str, package: str = "rhizome.jobs.store") -> dict[str, str]:
    """Every ``*.sql`` file of the dialect folder (not its migrations), merged."""
    queries: dict[str, str] = {}
    files = sorted(
        (f for f in sql_dir(dialect, package).iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    for entry in files:
        for name, sql in parse_queries(entry.read_text("utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice in {dialect}/*.sql")
            queries[name] = sql
    return queries


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
