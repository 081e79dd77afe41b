-- The library: documents, chunks, connections, highlights (DESIGN §3). Every row has user_id.

CREATE TABLE documents (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    title          TEXT NOT NULL,
    author         TEXT,
    source_type    TEXT NOT NULL,
    source_path    TEXT,
    source_url     TEXT,
    status         TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    word_count     INTEGER,
    page_count     INTEGER,
    chunk_count    INTEGER,
    storage_folder TEXT NOT NULL,
    error_message  TEXT,
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX documents_user_idx ON documents (user_id, created_at DESC);

CREATE TABLE chunks (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    document_id  TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    chunk_index  INTEGER NOT NULL,
    text         TEXT NOT NULL,
    heading_path TEXT NOT NULL DEFAULT '[]',
    start_offset INTEGER NOT NULL,
    end_offset   INTEGER NOT NULL,
    token_count  INTEGER NOT NULL,
    embedding    BLOB,
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX chunks_user_idx ON chunks (user_id);

CREATE TABLE connections (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    source_chunk_id    TEXT NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    target_chunk_id    TEXT NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    source_document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    target_document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    engine_scores      TEXT NOT NULL DEFAULT '{}',
    combined_score     REAL NOT NULL,
    reason             TEXT,
    user_validated     INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (source_chunk_id, target_chunk_id)
);
CREATE INDEX connections_source_doc_idx ON connections (source_document_id);
CREATE INDEX connections_target_doc_idx ON connections (target_document_id);

CREATE TABLE highlights (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    document_id TEXT REFERENCES documents (id) ON DELETE CASCADE,
    chunk_id    TEXT REFERENCES chunks (id) ON DELETE SET NULL,
    text        TEXT NOT NULL,
    note        TEXT,
    source      TEXT,
    start_offset INTEGER,
    end_offset  INTEGER,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX highlights_document_idx ON highlights (document_id);
