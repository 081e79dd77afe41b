"""Built-in job types: one module per type, each registering itself on import."""

from __future__ import annotations

from rhizome.jobs.registry import Registry, registry


def load_builtin_handlers() -> Registry:
    from rhizome.handlers import (  # noqa: F401
        detect_connections,
        export_documents,
        import_document,
        noop,
        obsidian_export,
        obsidian_sync,
        process_document,
        readwise_import,
        reprocess_connections,
    )

    return registry
