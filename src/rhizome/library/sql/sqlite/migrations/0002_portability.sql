-- Library portability (issue 13): the highlights table gets every field a highlight needs
-- (the chunk ids it spans, colour, tags, where it came from, how it was matched, its
-- status, its last change), and chunks get their enrichment fields, which an import with
-- merge_smart updates in place. Every row keeps its user_id.

ALTER TABLE highlights ADD COLUMN chunk_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE highlights ADD COLUMN color TEXT;
ALTER TABLE highlights ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE highlights ADD COLUMN external_id TEXT;
ALTER TABLE highlights ADD COLUMN match_method TEXT;
ALTER TABLE highlights ADD COLUMN confidence REAL;
ALTER TABLE highlights ADD COLUMN status TEXT NOT NULL DEFAULT 'matched'
    CHECK (status IN ('matched', 'needs_review', 'unmatched'));
ALTER TABLE highlights ADD COLUMN updated_at TEXT;
UPDATE highlights SET source = COALESCE(source, 'manual'), updated_at = created_at,
    chunk_ids = CASE WHEN chunk_id IS NULL THEN '[]' ELSE json_array(chunk_id) END;
CREATE INDEX highlights_user_document_idx ON highlights (user_id, document_id, start_offset);
CREATE UNIQUE INDEX highlights_external_idx ON highlights (user_id, source, external_id)
    WHERE external_id IS NOT NULL;

ALTER TABLE chunks ADD COLUMN themes TEXT;
ALTER TABLE chunks ADD COLUMN importance REAL;
ALTER TABLE chunks ADD COLUMN summary TEXT;
ALTER TABLE chunks ADD COLUMN concepts TEXT;
ALTER TABLE chunks ADD COLUMN polarity REAL;
ALTER TABLE chunks ADD COLUMN domain TEXT;
