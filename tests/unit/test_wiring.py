"""Wiring is explicit: importing the library changes nothing in the jobs core; the app hands
the library's tables and admin hooks to the store and to Admin."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from rhizome.app import BUILTIN_ADMIN_HOOKS, BUILTIN_MIGRATIONS, App
from rhizome.auth import MIGRATIONS as AUTH_MIGRATIONS
from rhizome.config import Settings
from rhizome.jobs.admin import Admin
from rhizome.jobs.store import JOBS_MIGRATIONS, SqlJobStore, open_store
from rhizome.library import ADMIN_HOOKS, MIGRATIONS
from rhizome.storage import LocalStorage

SNAPSHOT = r"""
import importlib, json, pkgutil, sys
import rhizome.jobs
import rhizome.jobs.store

CORE = sorted(
    {"rhizome.jobs", "rhizome.jobs.store"}
    | {f"rhizome.jobs.{m.name}" for m in pkgutil.iter_modules(rhizome.jobs.__path__)}
    | {f"rhizome.jobs.store.{m.name}" for m in pkgutil.iter_modules(rhizome.jobs.store.__path__)}
)
for name in CORE:
    if name != "rhizome.jobs.store.postgres" or importlib.util.find_spec("psycopg"):
        importlib.import_module(name)


def state():
    out = {}
    for name in CORE:
        module = sys.modules.get(name)
        for attr, value in vars(module or object()).items():
            if isinstance(value, (list, dict, set, tuple)) and not attr.startswith("__"):
                out[f"{name}.{attr}"] = repr(value)
    from rhizome.jobs.registry import registry
    from rhizome.jobs.store.base import SqlJobStore

    out["registry"] = repr(sorted(registry.names()))
    out["SqlJobStore.migration_sets"] = repr(getattr(SqlJobStore, "migration_sets", None))
    return out


before = state()
import rhizome.library
import rhizome.library.admin
after = state()
print(json.dumps({
    "changed": sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)),
    "globals": [k for k in after if k.rsplit(".", 1)[-1] in (
        "MIGRATION_SETS", "RESET_HOOKS", "ORPHAN_HOOKS")],
    "register_migrations": hasattr(sys.modules["rhizome.jobs.store"], "register_migrations"),
}))
"""


def test_importing_the_library_leaves_the_jobs_core_untouched() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result == {"changed": [], "globals": [], "register_migrations": False}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def test_a_store_gets_exactly_the_migrations_it_is_handed(tmp_path: Path) -> None:
    import rhizome.library  # noqa: F401  (importing it must not add its tables)

    jobs_only = open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        assert jobs_only.migration_sets == (JOBS_MIGRATIONS,)
        assert "background_jobs" in _tables(tmp_path / "jobs.db")
        assert "documents" not in _tables(tmp_path / "jobs.db")
    finally:
        jobs_only.close()

    both = open_store(f"sqlite:///{tmp_path / 'both.db'}", migrations=[MIGRATIONS, MIGRATIONS])
    try:
        assert both.migration_sets == (JOBS_MIGRATIONS, MIGRATIONS)
        assert {"background_jobs", "documents", "chunks"} <= _tables(tmp_path / "both.db")
        assert both.migrate() == []  # later upgrades know the same sets
    finally:
        both.close()
    # the class default is untouched by what one store was handed
    assert SqlJobStore.migration_sets == (JOBS_MIGRATIONS,)


def test_the_app_hands_over_the_library(tmp_path: Path) -> None:
    assert BUILTIN_MIGRATIONS == (MIGRATIONS, AUTH_MIGRATIONS)
    assert BUILTIN_ADMIN_HOOKS == (ADMIN_HOOKS,)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'app.db'}", storage_url=str(tmp_path / "files")
    )
    app = App(settings)
    try:
        assert app.store.migration_sets == (JOBS_MIGRATIONS, MIGRATIONS, AUTH_MIGRATIONS)
        assert {"documents", "users", "api_tokens"} <= set(_tables(tmp_path / "app.db"))
        admin = app.admin()
        assert admin.hooks == (ADMIN_HOOKS,)
        assert "deleted_processing_documents" in admin.nuclear_reset()
        assert "failed_orphaned_documents" in admin.fix_orphans()
        assert app.admin("alice").hooks == (ADMIN_HOOKS,)

        bare = Admin(app.store, app.storage)  # the jobs core alone: no library parts
        assert bare.hooks == ()
        assert "deleted_processing_documents" not in bare.nuclear_reset()
        assert "failed_orphaned_documents" not in bare.fix_orphans()
    finally:
        app.close()


def test_apps_get_their_own_lists(tmp_path: Path) -> None:
    one = App(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    two = App(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    one.migrations.append(JOBS_MIGRATIONS)
    assert two.migrations == [MIGRATIONS, AUTH_MIGRATIONS]
    assert BUILTIN_MIGRATIONS == (MIGRATIONS, AUTH_MIGRATIONS)
    storage = LocalStorage(tmp_path / "s")
    assert Admin(two.store, storage, hooks=two.admin_hooks).hooks == (ADMIN_HOOKS,)
    one.close()
    two.close()
