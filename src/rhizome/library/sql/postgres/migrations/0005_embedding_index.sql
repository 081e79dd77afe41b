-- Embeddings record the model (and precision) that made them, and each document of a
-- user's library carries a version stamp that changes whenever its embedded chunks do, so a
-- long-running worker can keep the library's vector index in memory and reload only the
-- documents whose stamp moved (issue 18).

ALTER TABLE chunks ADD COLUMN embedding_model text;
-- Vectors written before this migration: 384 float32 values can only be all-MiniLM-L6-v2
-- at full precision (PyTorch), 256 the hash embedder; anything else stays unknown (NULL)
-- and is re-embedded by a reprocess.
UPDATE chunks SET embedding_model = 'all-MiniLM-L6-v2'
WHERE embedding IS NOT NULL AND octet_length(embedding) = 384 * 4;
UPDATE chunks SET embedding_model = 'hash-bow-256'
WHERE embedding IS NOT NULL AND octet_length(embedding) = 256 * 4;
CREATE INDEX chunks_user_model_idx ON chunks (user_id, embedding_model);

-- One row per (user, document) whose chunks ever changed; `version` comes from one
-- sequence, so a value is never reused (a deleted and re-imported document gets a new
-- one). Readers compare the stamps they loaded with these, document by document (not by
-- "greater than": sequence order is not commit order).
CREATE SEQUENCE library_index_version_seq;

CREATE TABLE library_index_versions (
    user_id     text NOT NULL,
    document_id uuid NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (user_id, document_id)
);
INSERT INTO library_index_versions (user_id, document_id, version)
SELECT DISTINCT user_id, document_id, 0 FROM chunks;

CREATE FUNCTION library_index_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO library_index_versions (user_id, document_id, version)
        SELECT user_id, document_id, nextval('library_index_version_seq')
        FROM (SELECT DISTINCT user_id, document_id FROM new_rows) d
        ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO library_index_versions (user_id, document_id, version)
        SELECT user_id, document_id, nextval('library_index_version_seq')
        FROM (SELECT DISTINCT user_id, document_id FROM old_rows) d
        ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
    ELSE
        INSERT INTO library_index_versions (user_id, document_id, version)
        SELECT user_id, document_id, nextval('library_index_version_seq')
        FROM (
            SELECT n.user_id, n.document_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.embedding IS DISTINCT FROM o.embedding
               OR n.embedding_model IS DISTINCT FROM o.embedding_model
               OR n.text IS DISTINCT FROM o.text
               OR n.document_id IS DISTINCT FROM o.document_id
               OR n.user_id IS DISTINCT FROM o.user_id
            UNION
            SELECT o.user_id, o.document_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.document_id IS DISTINCT FROM o.document_id
               OR n.user_id IS DISTINCT FROM o.user_id
        ) d
        ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER chunks_index_version_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION library_index_bump();
CREATE TRIGGER chunks_index_version_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION library_index_bump();
CREATE TRIGGER chunks_index_version_update AFTER UPDATE ON chunks
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION library_index_bump();

CREATE FUNCTION library_index_bump_title() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO library_index_versions (user_id, document_id, version)
    VALUES (NEW.user_id, NEW.id, nextval('library_index_version_seq'))
    ON CONFLICT (user_id, document_id) DO UPDATE SET version = excluded.version;
    RETURN NULL;
END;
$$;

CREATE TRIGGER documents_index_version_title AFTER UPDATE OF title ON documents
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title)
    EXECUTE FUNCTION library_index_bump_title();
