-- The library: documents, chunks, connections, highlights (DESIGN §3). Every row has user_id.

CREATE TABLE documents (
    id             uuid PRIMARY KEY,
    user_id        text NOT NULL,
    title          text NOT NULL,
    author         text,
    source_type    text NOT NULL,
    source_path    text,
    source_url     text,
    status         text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    word_count     integer,
    page_count     integer,
    chunk_count    integer,
    storage_folder text NOT NULL,
    error_message  text,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_user_idx ON documents (user_id, created_at DESC);

CREATE TABLE chunks (
    id           uuid PRIMARY KEY,
    user_id      text NOT NULL,
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    chunk_index  integer NOT NULL,
    text         text NOT NULL,
    heading_path jsonb NOT NULL DEFAULT '[]'::jsonb,
    start_offset integer NOT NULL,
    end_offset   integer NOT NULL,
    token_count  integer NOT NULL,
    embedding    bytea,
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX chunks_user_idx ON chunks (user_id);

CREATE TABLE connections (
    id                 uuid PRIMARY KEY,
    user_id            text NOT NULL,
    source_chunk_id    uuid NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    target_chunk_id    uuid NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    source_document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    target_document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    engine_scores      jsonb NOT NULL DEFAULT '{}'::jsonb,
    combined_score     double precision NOT NULL,
    reason             text,
    user_validated     boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_chunk_id, target_chunk_id)
);
CREATE INDEX connections_source_doc_idx ON connections (source_document_id);
CREATE INDEX connections_target_doc_idx ON connections (target_document_id);

CREATE TABLE highlights (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    document_id uuid REFERENCES documents (id) ON DELETE CASCADE,
    chunk_id    uuid REFERENCES chunks (id) ON DELETE SET NULL,
    text        text NOT NULL,
    note        text,
    source      text,
    start_offset integer,
    end_offset  integer,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX highlights_document_idx ON highlights (document_id);
