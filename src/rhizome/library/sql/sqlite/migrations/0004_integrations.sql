-- Integrations (issue 15): Obsidian vault settings per user, the sync state of each
-- exported note, highlight recovery fields, connection remapping flags, and the ledger of
-- Readwise highlights (every imported highlight with its outcome, also those of books that
-- are not in the library) with the user's Readwise account. Every row keeps its user_id.

CREATE TABLE vault_settings (
    user_id            TEXT PRIMARY KEY,
    vault_path         TEXT NOT NULL,
    subfolder          TEXT NOT NULL DEFAULT 'Rhizome',
    vault_name         TEXT,
    export_highlights  INTEGER NOT NULL DEFAULT 1,
    export_connections INTEGER NOT NULL DEFAULT 1,
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One row per note the integration knows: the note path (relative to <vault>/<sub-folder>),
-- its document, and the hashes of both sides at the last sync.
CREATE TABLE obsidian_notes (
    user_id        TEXT NOT NULL,
    note_path      TEXT NOT NULL,
    document_id    TEXT REFERENCES documents (id) ON DELETE SET NULL,
    status         TEXT NOT NULL DEFAULT 'synced'
        CHECK (status IN ('synced', 'conflict', 'vault_deleted', 'pending', 'error')),
    vault_hash     TEXT,
    vault_mtime_ns INTEGER,
    vault_size     INTEGER,
    body_hash      TEXT,
    library_sig    TEXT,
    derived_sig    TEXT,
    message        TEXT,
    last_job_id    TEXT,
    last_item      INTEGER,
    last_result    TEXT,
    synced_at      TEXT,
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, note_path)
);
CREATE UNIQUE INDEX obsidian_notes_document_idx ON obsidian_notes (user_id, document_id)
    WHERE document_id IS NOT NULL;
CREATE INDEX obsidian_notes_job_idx ON obsidian_notes (last_job_id);

ALTER TABLE highlights ADD COLUMN match_reason TEXT;
ALTER TABLE highlights ADD COLUMN original_text TEXT;

ALTER TABLE connections ADD COLUMN remap_status TEXT
    CHECK (remap_status IS NULL OR remap_status IN ('moved', 'review', 'lost'));
ALTER TABLE connections ADD COLUMN remap_score REAL;
ALTER TABLE connections ADD COLUMN remap_text TEXT;

CREATE TABLE readwise_highlights (
    user_id        TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    readwise_id    TEXT,
    book_title     TEXT NOT NULL,
    book_author    TEXT,
    text           TEXT NOT NULL,
    note           TEXT,
    color          TEXT,
    tags           TEXT NOT NULL DEFAULT '[]',
    location       INTEGER,
    location_type  TEXT,
    highlighted_at TEXT,
    status         TEXT NOT NULL
        CHECK (status IN ('matched', 'needs_review', 'unmatched', 'skipped')),
    reason         TEXT,
    document_id    TEXT REFERENCES documents (id) ON DELETE SET NULL,
    highlight_id   TEXT,
    book_score     REAL,
    confidence     REAL,
    match_method   TEXT,
    import_job_id  TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, external_id)
);
CREATE INDEX readwise_highlights_job_idx ON readwise_highlights (user_id, import_job_id);

CREATE TABLE readwise_accounts (
    user_id        TEXT PRIMARY KEY,
    token          TEXT,
    updated_after  TEXT,
    last_import_at TEXT,
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
