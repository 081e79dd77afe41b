-- Named queries of export, import and the storage scan (PostgreSQL). Every query is scoped
-- by user_id; an import never touches another user's rows (the upserts check the owner).

-- name: document_owner
SELECT user_id FROM documents WHERE id = %(id)s;

-- name: chunk_owners
SELECT id, user_id, document_id FROM chunks WHERE id = ANY(%(ids)s::uuid[]);

-- name: chunk_counts
SELECT document_id, count(*) AS n FROM chunks WHERE user_id = %(user_id)s GROUP BY document_id;

-- name: count_chunks
SELECT count(*) AS n, max(chunk_index) AS last_index FROM chunks
WHERE user_id = %(user_id)s AND document_id = %(document_id)s;

-- name: sample_chunks
SELECT id, chunk_index, text, start_offset, end_offset FROM chunks
WHERE user_id = %(user_id)s AND document_id = %(document_id)s
ORDER BY chunk_index LIMIT %(limit)s;

-- name: import_document
INSERT INTO documents (id, user_id, title, author, source_type, source_path, source_url, status,
                       word_count, page_count, chunk_count, storage_folder, metadata,
                       created_at, updated_at)
VALUES (%(id)s, %(user_id)s, %(title)s, %(author)s, %(source_type)s, %(source_path)s,
        %(source_url)s, 'processing', %(word_count)s, %(page_count)s, %(chunk_count)s,
        %(storage_folder)s, %(metadata)s, COALESCE(%(created_at)s::timestamptz, now()), now());

-- name: finish_import_document
UPDATE documents
SET status = 'ready', chunk_count = %(chunk_count)s, error_message = NULL,
    word_count = COALESCE(word_count, %(word_count)s),
    page_count = COALESCE(page_count, %(page_count)s), updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s
  AND (status IS DISTINCT FROM 'ready' OR chunk_count IS DISTINCT FROM %(chunk_count)s
       OR error_message IS NOT NULL
       OR (word_count IS NULL AND %(word_count)s::integer IS NOT NULL)
       OR (page_count IS NULL AND %(page_count)s::integer IS NOT NULL));

-- name: park_chunk_indexes
UPDATE chunks SET chunk_index = -1 - chunk_index
WHERE user_id = %(user_id)s AND document_id = %(document_id)s;

-- name: delete_chunks_except
DELETE FROM chunks
WHERE user_id = %(user_id)s AND document_id = %(document_id)s
  AND NOT (id = ANY(%(keep)s::uuid[]));

-- name: upsert_chunk
INSERT INTO chunks (id, user_id, document_id, chunk_index, text, heading_path, start_offset,
                    end_offset, token_count, themes, importance, summary, concepts, polarity,
                    domain)
VALUES (%(id)s, %(user_id)s, %(document_id)s, %(chunk_index)s, %(text)s,
        %(heading_path)s::jsonb, %(start_offset)s, %(end_offset)s, %(token_count)s,
        %(themes)s::jsonb, %(importance)s, %(summary)s, %(concepts)s::jsonb, %(polarity)s,
        %(domain)s)
ON CONFLICT (id) DO UPDATE
SET chunk_index = excluded.chunk_index, text = excluded.text,
    heading_path = excluded.heading_path, start_offset = excluded.start_offset,
    end_offset = excluded.end_offset, token_count = excluded.token_count,
    themes = excluded.themes, importance = excluded.importance, summary = excluded.summary,
    concepts = excluded.concepts, polarity = excluded.polarity, domain = excluded.domain,
    embedding = CASE WHEN chunks.text = excluded.text THEN chunks.embedding END
WHERE chunks.user_id = excluded.user_id AND chunks.document_id = excluded.document_id;

-- name: merge_chunk_enrichment
UPDATE chunks
SET themes = COALESCE(%(themes)s::jsonb, themes),
    importance = COALESCE(%(importance)s::double precision, importance),
    summary = COALESCE(%(summary)s::text, summary),
    concepts = COALESCE(%(concepts)s::jsonb, concepts),
    polarity = COALESCE(%(polarity)s::double precision, polarity),
    domain = COALESCE(%(domain)s::text, domain)
WHERE user_id = %(user_id)s AND document_id = %(document_id)s
  AND chunk_index = %(chunk_index)s
  AND ((%(themes)s::jsonb IS NOT NULL AND themes IS DISTINCT FROM %(themes)s::jsonb)
       OR (%(importance)s::double precision IS NOT NULL
           AND importance IS DISTINCT FROM %(importance)s::double precision)
       OR (%(summary)s::text IS NOT NULL AND summary IS DISTINCT FROM %(summary)s::text)
       OR (%(concepts)s::jsonb IS NOT NULL AND concepts IS DISTINCT FROM %(concepts)s::jsonb)
       OR (%(polarity)s::double precision IS NOT NULL
           AND polarity IS DISTINCT FROM %(polarity)s::double precision)
       OR (%(domain)s::text IS NOT NULL AND domain IS DISTINCT FROM %(domain)s::text));

-- name: import_connection
INSERT INTO connections (id, user_id, source_chunk_id, target_chunk_id, source_document_id,
                         target_document_id, engine_scores, combined_score, reason,
                         user_validated, created_at)
SELECT %(id)s, %(user_id)s, %(source_chunk_id)s, %(target_chunk_id)s,
       %(source_document_id)s, %(target_document_id)s, %(engine_scores)s::jsonb,
       %(combined_score)s, %(reason)s, %(user_validated)s,
       COALESCE(%(created_at)s::timestamptz, now())
WHERE EXISTS (SELECT 1 FROM chunks WHERE id = %(source_chunk_id)s AND user_id = %(user_id)s
                                     AND document_id = %(source_document_id)s)
  AND EXISTS (SELECT 1 FROM chunks WHERE id = %(target_chunk_id)s AND user_id = %(user_id)s
                                     AND document_id = %(target_document_id)s)
ON CONFLICT DO NOTHING;

-- name: export_connections
SELECT * FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s OR target_document_id = %(document_id)s)
ORDER BY created_at, id;

-- name: export_highlights
SELECT * FROM highlights
WHERE user_id = %(user_id)s AND document_id = %(document_id)s
ORDER BY start_offset, created_at, id;

-- name: chunk_spans
SELECT id, chunk_index, start_offset, end_offset FROM chunks
WHERE user_id = %(user_id)s AND document_id = %(document_id)s
ORDER BY chunk_index;

-- name: missing_embeddings
SELECT id, text FROM chunks
WHERE user_id = %(user_id)s AND document_id = %(document_id)s AND embedding IS NULL
ORDER BY chunk_index;

-- name: count_document_connections
SELECT count(*) AS n FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s OR target_document_id = %(document_id)s);
