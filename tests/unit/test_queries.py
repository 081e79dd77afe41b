"""The SQL file loader: named queries and numbered migrations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rhizome.jobs.store import base, postgres, sqlite
from rhizome.jobs.store.queries import load_migrations, load_queries, parse_queries

DIALECTS = ["sqlite", "postgres"]
STORE_DIR = Path(base.__file__).parent


def test_parse_queries() -> None:
    text = """-- a header comment that belongs to no query
SELECT 'ignored';

-- name: first
-- what it does
SELECT 1;

-- name: second_one
UPDATE t SET a = 1  -- trailing comments stay
WHERE b = 2;
"""
    assert parse_queries(text) == {
        "first": "SELECT 1",
        "second_one": "UPDATE t SET a = 1  -- trailing comments stay\nWHERE b = 2",
    }


def test_parse_queries_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate query name 'twice'"):
        parse_queries(
            "-- name: twice\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: twice\nSELECT 3;"
        )


def test_parse_queries_needs_a_proper_name_line() -> None:
    assert parse_queries("SELECT 1;") == {}
    # the marker must be on its own line and the name lower-case
    assert parse_queries("SELECT 1; -- name: inline\n-- name: Upper\nSELECT 2;") == {}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dialect_files_parse(dialect: str) -> None:
    queries = load_queries(dialect)
    assert len(queries) > 20
    for name, sql in queries.items():
        assert sql, name
        assert not sql.endswith(";"), name
        assert "-- name:" not in sql, name
        # every block is one statement
        assert ";" not in re.sub(r"'[^']*'", "''", sql), name


def _names_used(module_file: str) -> set[str]:
    """Query names a module runs: ``tx.one("name", ...)`` and the ``set_*`` updates it
    hands to ``_apply``."""
    text = Path(module_file).read_text("utf-8")
    called = re.findall(r"\b(?:tx|s)\.(?:one|all|run|many)\(\s*\"(\w+)\"", text)
    return set(called) | set(re.findall(r"\"(set_\w+)\"", text))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_query_the_shared_store_uses_exists(dialect: str) -> None:
    used = _names_used(base.__file__)
    assert {"lock_job", "insert_event", "list_jobs", "set_failed"} <= used  # the scan works
    assert used - set(load_queries(dialect)) == set()


@pytest.mark.parametrize(("dialect", "module"), [("sqlite", sqlite), ("postgres", postgres)])
def test_every_query_a_dialect_uses_exists(dialect: str, module: object) -> None:
    used = _names_used(module.__file__)  # type: ignore[attr-defined]
    assert used, "the scan found nothing"
    assert used - set(load_queries(dialect)) == set()


def test_parameter_styles() -> None:
    for name, sql in load_queries("sqlite").items():
        assert "%(" not in sql, name
    for name, sql in load_queries("postgres").items():
        assert not re.search(r"(?<![:\w]):[a-z_]\w*", sql), name


def test_load_queries_is_cached() -> None:
    assert load_queries("sqlite") is load_queries("sqlite")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migrations_numbered_from_one(dialect: str) -> None:
    migrations = load_migrations(dialect)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "jobs"
    assert all(m.component == "jobs" for m in migrations)
    assert "CREATE TABLE background_jobs" in migrations[0].sql


def test_both_dialects_have_the_same_migrations() -> None:
    a = [(m.version, m.name) for m in load_migrations("sqlite")]
    b = [(m.version, m.name) for m in load_migrations("postgres")]
    assert a == b


def _fake_package(root: Path, name: str, files: list[str]) -> None:
    pkg = root / name
    folder = pkg / "sql" / "sqlite" / "migrations"
    folder.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for f in files:
        (folder / f).write_text(f"-- {f}\nCREATE TABLE t_{f[:4]} (x INTEGER);\n")


def test_migrations_sorted_and_other_files_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_package(tmp_path, "rz_mig_ok", ["0002_more.sql", "0001_first.sql", "README.md", "x.sql"])
    monkeypatch.syspath_prepend(str(tmp_path))
    found = load_migrations("sqlite", "extra", "rz_mig_ok")
    assert [(m.component, m.version, m.name) for m in found] == [
        ("extra", 1, "first"),
        ("extra", 2, "more"),
    ]


@pytest.mark.parametrize(
    "files",
    [["0001_a.sql", "0003_c.sql"], ["0002_b.sql"], ["0001_a.sql", "0001_b.sql"]],
)
def test_misnumbered_migrations_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[str]
) -> None:
    name = f"rz_mig_bad_{abs(hash(tuple(files)))}"
    _fake_package(tmp_path, name, files)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"not numbered 1\.\.n"):
        load_migrations("sqlite", "extra", name)
