-- Connections the user curates (issue 14): validated (already there), starred, rejected,
-- when the user decided, and when an engine last found the pair (a reprocess deletes only
-- what it did not find again); the rejections themselves, keyed by the content of the two
-- chunks (so a rejected pair is never re-created, even after its chunks were re-made);
-- when each document's connections were last detected and against how many documents;
-- when a document's chunks were last replaced (for reprocess mode add_new).

ALTER TABLE connections ADD COLUMN starred boolean NOT NULL DEFAULT false;
ALTER TABLE connections ADD COLUMN rejected boolean NOT NULL DEFAULT false;
ALTER TABLE connections ADD COLUMN decided_at timestamptz;
ALTER TABLE connections ADD COLUMN found_at timestamptz;
CREATE INDEX connections_user_score_idx ON connections (user_id, combined_score DESC);

ALTER TABLE documents ADD COLUMN connections_detected_at timestamptz;
ALTER TABLE documents ADD COLUMN connections_compared integer;
ALTER TABLE documents ADD COLUMN content_changed_at timestamptz;

CREATE TABLE connection_rejections (
    user_id            text NOT NULL,
    pair_key           text NOT NULL,
    source_chunk_id    uuid,
    target_chunk_id    uuid,
    source_document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    target_document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, pair_key)
);
CREATE INDEX connection_rejections_source_idx ON connection_rejections (source_document_id);
CREATE INDEX connection_rejections_target_idx ON connection_rejections (target_document_id);
