"""Job types from the user's own code.

* ``rhizome worker --app MODULE`` / ``rhizome serve --app MODULE`` (repeatable),
  ``RHIZOME_APPS=mod_a,mod_b`` or ``apps = [...]`` in ``rhizome.toml`` import modules that
  register job types (with ``@registry.job_type``) when imported;
* installed packages register through the entry-point group ``rhizome.job_types``: the
  entry point names a module (imported) or a callable (called with the registry).

A module that cannot be imported is a :class:`ConfigError` that says what to do.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Iterable

from rhizome.errors import ConfigError
from rhizome.jobs.registry import Registry, registry

ENTRY_POINT_GROUP = "rhizome.job_types"
log = logging.getLogger("rhizome.jobs.plugins")

_loaded: set[str] = set()


def load_apps(modules: Iterable[str], types: Registry = registry) -> list[str]:
    """Import each module (job types register themselves on import). The current
    directory is importable, as with ``python -m``. Returns the modules imported."""
    names = [m.strip() for m in modules if m and m.strip()]
    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    imported = []
    for name in names:
        before = set(types.names())
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.split(".")[0] != exc.name.split(".")[0]:
                raise ConfigError(
                    f"The app module {name!r} failed to import: it needs {exc.name!r}, "
                    "which is not installed.",
                    f"Install {exc.name} in the environment that runs rhizome.",
                ) from None
            raise ConfigError(
                f"Cannot import the app module {name!r}: no module of that name.",
                "Give the module's import name (count for count.py), run the command in the "
                "folder that holds it or add that folder to PYTHONPATH, or pip install your "
                "package.",
            ) from None
        except Exception as exc:
            raise ConfigError(
                f"The app module {name!r} raised {type(exc).__name__} on import: {exc}.",
                "Fix the module (run `python -c 'import "
                f"{name}'` to see the traceback), then start again.",
            ) from None
        imported.append(name)
        new = sorted(set(types.names()) - before)
        if name not in _loaded:
            log.info("loaded app %s (job types: %s)", name, ", ".join(new) or "none new")
        _loaded.add(name)
    return imported


def load_entry_points(types: Registry = registry, group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every entry point of ``group``: a module is imported; a callable is called
    with the registry. Returns the entry points' names."""
    loaded = []
    for ep in importlib.metadata.entry_points(group=group):
        try:
            target = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"The job-type plugin {ep.name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}.",
                f"Reinstall or uninstall the package that provides it ({ep.value}).",
            ) from None
        if callable(target):
            target(types)
        loaded.append(ep.name)
    return loaded
