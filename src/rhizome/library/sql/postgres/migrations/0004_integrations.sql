-- Integrations (issue 15): Obsidian vault settings per user, the sync state of each
-- exported note, highlight recovery fields, connection remapping flags, and the ledger of
-- Readwise highlights (every imported highlight with its outcome, also those of books that
-- are not in the library) with the user's Readwise account. Every row keeps its user_id.

CREATE TABLE vault_settings (
    user_id            text PRIMARY KEY,
    vault_path         text NOT NULL,
    subfolder          text NOT NULL DEFAULT 'Rhizome',
    vault_name         text,
    export_highlights  boolean NOT NULL DEFAULT true,
    export_connections boolean NOT NULL DEFAULT true,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per note the integration knows: the note path (relative to <vault>/<sub-folder>),
-- its document, and the hashes of both sides at the last sync.
CREATE TABLE obsidian_notes (
    user_id        text NOT NULL,
    note_path      text NOT NULL,
    document_id    uuid REFERENCES documents (id) ON DELETE SET NULL,
    status         text NOT NULL DEFAULT 'synced'
        CHECK (status IN ('synced', 'conflict', 'vault_deleted', 'pending', 'error')),
    vault_hash     text,
    vault_mtime_ns bigint,
    vault_size     bigint,
    body_hash      text,
    library_sig    text,
    derived_sig    text,
    message        text,
    last_job_id    text,
    last_item      integer,
    last_result    jsonb,
    synced_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, note_path)
);
CREATE UNIQUE INDEX obsidian_notes_document_idx ON obsidian_notes (user_id, document_id)
    WHERE document_id IS NOT NULL;
CREATE INDEX obsidian_notes_job_idx ON obsidian_notes (last_job_id);

ALTER TABLE highlights
    ADD COLUMN match_reason  text,
    ADD COLUMN original_text text;

ALTER TABLE connections
    ADD COLUMN remap_status text
        CHECK (remap_status IS NULL OR remap_status IN ('moved', 'review', 'lost')),
    ADD COLUMN remap_score  double precision,
    ADD COLUMN remap_text   text;

CREATE TABLE readwise_highlights (
    user_id        text NOT NULL,
    external_id    text NOT NULL,
    readwise_id    text,
    book_title     text NOT NULL,
    book_author    text,
    text           text NOT NULL,
    note           text,
    color          text,
    tags           jsonb NOT NULL DEFAULT '[]'::jsonb,
    location       integer,
    location_type  text,
    highlighted_at text,
    status         text NOT NULL
        CHECK (status IN ('matched', 'needs_review', 'unmatched', 'skipped')),
    reason         text,
    document_id    uuid REFERENCES documents (id) ON DELETE SET NULL,
    highlight_id   uuid,
    book_score     double precision,
    confidence     double precision,
    match_method   text,
    import_job_id  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, external_id)
);
CREATE INDEX readwise_highlights_job_idx ON readwise_highlights (user_id, import_job_id);

CREATE TABLE readwise_accounts (
    user_id        text PRIMARY KEY,
    token          text,
    updated_after  text,
    last_import_at timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
