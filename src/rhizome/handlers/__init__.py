"""Built-in job types: one module per type, each registering itself on import."""

from __future__ import annotations

from rhizome.jobs.registry import Registry, registry


def load_builtin_handlers() -> Registry:
    from rhizome.handlers import noop  # noqa: F401

    return registry
