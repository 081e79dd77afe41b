-- Embeddings record the model (and precision) that made them, and each document of a
-- user's library carries a version stamp that changes whenever its embedded chunks do, so a
-- long-running worker can keep the library's vector index in memory and reload only the
-- documents whose stamp moved (issue 18).

ALTER TABLE chunks ADD COLUMN embedding_model TEXT;
-- Vectors written before this migration: 384 float32 values can only be all-MiniLM-L6-v2
-- at full precision (PyTorch), 256 the hash embedder; anything else stays unknown (NULL)
-- and is re-embedded by a reprocess.
UPDATE chunks SET embedding_model = 'all-MiniLM-L6-v2'
WHERE embedding IS NOT NULL AND length(embedding) = 384 * 4;
UPDATE chunks SET embedding_model = 'hash-bow-256'
WHERE embedding IS NOT NULL AND length(embedding) = 256 * 4;
CREATE INDEX chunks_user_model_idx ON chunks (user_id, embedding_model);

-- One row per (user, document) whose chunks ever changed; `version` comes from one
-- library-wide clock, so a value is never reused (a deleted and re-imported document gets
-- a new one). Readers compare the stamps they loaded with these, document by document.
CREATE TABLE library_clock (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO library_clock (id, value) VALUES (1, 0);

CREATE TABLE library_index_versions (
    user_id     TEXT NOT NULL,
    document_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (user_id, document_id)
);
INSERT INTO library_index_versions (user_id, document_id, version)
SELECT DISTINCT user_id, document_id, 0 FROM chunks;

CREATE TRIGGER chunks_index_version_insert AFTER INSERT ON chunks
BEGIN
    UPDATE library_clock SET value = value + 1 WHERE id = 1;
    INSERT INTO library_index_versions (user_id, document_id, version)
    VALUES (NEW.user_id, NEW.document_id, (SELECT value FROM library_clock WHERE id = 1))
    ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
END;

CREATE TRIGGER chunks_index_version_delete AFTER DELETE ON chunks
BEGIN
    UPDATE library_clock SET value = value + 1 WHERE id = 1;
    INSERT INTO library_index_versions (user_id, document_id, version)
    VALUES (OLD.user_id, OLD.document_id, (SELECT value FROM library_clock WHERE id = 1))
    ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
END;

CREATE TRIGGER chunks_index_version_update
AFTER UPDATE OF embedding, embedding_model, text, document_id, user_id ON chunks
BEGIN
    UPDATE library_clock SET value = value + 1 WHERE id = 1;
    INSERT INTO library_index_versions (user_id, document_id, version)
    VALUES (OLD.user_id, OLD.document_id, (SELECT value FROM library_clock WHERE id = 1))
    ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
    INSERT INTO library_index_versions (user_id, document_id, version)
    VALUES (NEW.user_id, NEW.document_id, (SELECT value FROM library_clock WHERE id = 1))
    ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
END;

CREATE TRIGGER documents_index_version_title AFTER UPDATE OF title ON documents
WHEN OLD.title IS NOT NEW.title
BEGIN
    UPDATE library_clock SET value = value + 1 WHERE id = 1;
    INSERT INTO library_index_versions (user_id, document_id, version)
    VALUES (NEW.user_id, NEW.id, (SELECT value FROM library_clock WHERE id = 1))
    ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
END;
