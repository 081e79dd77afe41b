-- Library portability (issue 13): the highlights table gets every field a highlight needs
-- (the chunk ids it spans, colour, tags, where it came from, how it was matched, its
-- status, its last change), and chunks get their enrichment fields, which an import with
-- merge_smart updates in place. Every row keeps its user_id.

ALTER TABLE highlights
    ADD COLUMN chunk_ids    jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN color        text,
    ADD COLUMN tags         jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN external_id  text,
    ADD COLUMN match_method text,
    ADD COLUMN confidence   double precision,
    ADD COLUMN status       text NOT NULL DEFAULT 'matched'
        CHECK (status IN ('matched', 'needs_review', 'unmatched')),
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now();
UPDATE highlights SET source = COALESCE(source, 'manual'), updated_at = created_at,
    chunk_ids = CASE WHEN chunk_id IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(chunk_id) END;
CREATE INDEX highlights_user_document_idx ON highlights (user_id, document_id, start_offset);
CREATE UNIQUE INDEX highlights_external_idx ON highlights (user_id, source, external_id)
    WHERE external_id IS NOT NULL;

ALTER TABLE chunks
    ADD COLUMN themes     jsonb,
    ADD COLUMN importance double precision,
    ADD COLUMN summary    text,
    ADD COLUMN concepts   jsonb,
    ADD COLUMN polarity   double precision,
    ADD COLUMN domain     text;
