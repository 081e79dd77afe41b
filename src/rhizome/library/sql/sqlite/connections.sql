-- Named queries of connection curation (issue 14), SQLite. Every query is scoped by
-- user_id. Names start with conn_ (one namespace with queries.sql).

-- fragment: conn_where_base
c.user_id = :user_id
AND (:document_id IS NULL OR c.source_document_id = :document_id
     OR c.target_document_id = :document_id)
AND (:engine IS NULL OR COALESCE(json_extract(c.engine_scores, '$.' || :engine), 0) > 0)
AND (:min_score IS NULL OR c.combined_score >= :min_score)

-- fragment: conn_where_state
(CASE :state
   WHEN 'all' THEN 1
   WHEN 'validated' THEN c.user_validated = 1 AND c.rejected = 0
   WHEN 'starred' THEN c.starred = 1 AND c.rejected = 0
   WHEN 'rejected' THEN c.rejected = 1
   WHEN 'undecided' THEN c.user_validated = 0 AND c.starred = 0 AND c.rejected = 0
   ELSE c.rejected = 0
 END)

-- fragment: conn_detail_columns
c.*, sc.text AS source_text, sc.chunk_index AS source_index,
sc.heading_path AS source_heading, tc.text AS target_text,
tc.chunk_index AS target_index, tc.heading_path AS target_heading,
sd.title AS source_title, td.title AS target_title

-- fragment: conn_detail_joins
JOIN chunks sc ON sc.id = c.source_chunk_id
JOIN chunks tc ON tc.id = c.target_chunk_id
JOIN documents sd ON sd.id = c.source_document_id
JOIN documents td ON td.id = c.target_document_id

-- fragment: conn_same_pair
user_id = :user_id
AND ((source_chunk_id = :source_chunk_id AND target_chunk_id = :target_chunk_id)
  OR (source_chunk_id = :target_chunk_id AND target_chunk_id = :source_chunk_id))

-- fragment: conn_touches_documents
(source_document_id IN (SELECT value FROM json_each(:document_ids))
 OR target_document_id IN (SELECT value FROM json_each(:document_ids)))

-- name: conn_search
SELECT {{conn_detail_columns}}
FROM connections c
{{conn_detail_joins}}
WHERE {{conn_where_base}} AND {{conn_where_state}}
ORDER BY
  CASE WHEN :sort = 'score' THEN c.combined_score END DESC,
  CASE WHEN :sort = 'score_asc' THEN c.combined_score END ASC,
  CASE WHEN :sort = 'newest' THEN c.created_at END DESC,
  CASE WHEN :sort = 'decided' THEN c.decided_at END DESC,
  CASE WHEN :sort = 'document' THEN sd.title END ASC,
  CASE WHEN :sort = 'document' THEN td.title END ASC,
  c.combined_score DESC, c.id
LIMIT :limit OFFSET :offset;

-- name: conn_search_count
SELECT count(*) AS n FROM connections c
WHERE {{conn_where_base}} AND {{conn_where_state}};

-- name: conn_state_counts
SELECT count(*) AS total,
       coalesce(sum(CASE WHEN c.rejected = 0 THEN 1 ELSE 0 END), 0) AS visible,
       coalesce(sum(CASE WHEN c.rejected = 0 AND c.user_validated = 1 THEN 1 ELSE 0 END), 0)
           AS validated,
       coalesce(sum(CASE WHEN c.rejected = 0 AND c.starred = 1 THEN 1 ELSE 0 END), 0) AS starred,
       coalesce(sum(CASE WHEN c.rejected = 1 THEN 1 ELSE 0 END), 0) AS rejected,
       coalesce(sum(CASE WHEN c.rejected = 0 AND c.user_validated = 0 AND c.starred = 0
                         THEN 1 ELSE 0 END), 0) AS undecided
FROM connections c
WHERE {{conn_where_base}};

-- name: conn_get
SELECT {{conn_detail_columns}}
FROM connections c
{{conn_detail_joins}}
WHERE c.id = :id AND c.user_id = :user_id;

-- name: conn_set_decision
UPDATE connections
SET user_validated = :validated, starred = :starred, rejected = :rejected,
    decided_at = :decided_at
WHERE id = :id AND user_id = :user_id
RETURNING id;

-- name: conn_rejection_add
INSERT INTO connection_rejections (user_id, pair_key, source_chunk_id, target_chunk_id,
                                   source_document_id, target_document_id, created_at)
VALUES (:user_id, :pair_key, :source_chunk_id, :target_chunk_id, :source_document_id,
        :target_document_id, :created_at)
ON CONFLICT (user_id, pair_key) DO UPDATE
SET source_chunk_id = excluded.source_chunk_id,
    target_chunk_id = excluded.target_chunk_id,
    source_document_id = excluded.source_document_id,
    target_document_id = excluded.target_document_id;

-- name: conn_rejection_remove
DELETE FROM connection_rejections WHERE user_id = :user_id AND pair_key = :pair_key;

-- name: conn_rejection_keys
SELECT pair_key, created_at FROM connection_rejections WHERE user_id = :user_id;

-- name: conn_rejections_of_document
SELECT * FROM connection_rejections
WHERE user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id);

-- name: conn_visible_pairs
SELECT source_chunk_id, target_chunk_id FROM connections
WHERE user_id = :user_id AND rejected = 0
  AND (source_document_id = :document_id OR target_document_id = :document_id);

-- name: conn_delete_replaceable
DELETE FROM connections
WHERE user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id)
  AND user_validated = 0 AND starred = 0
  AND (NOT :keep_rejected OR rejected = 0)
  AND (found_at IS NULL OR found_at < :since)
  AND (CASE WHEN source_document_id = :document_id THEN target_document_id
            ELSE source_document_id END)
      NOT IN (SELECT value FROM json_each(:pending));

-- name: conn_any_of_document
SELECT 1 AS found FROM connections
WHERE user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id)
LIMIT 1;

-- name: conn_lock_user
-- Every transaction that inserts connections takes this lock first (see the PostgreSQL
-- version); here BEGIN IMMEDIATE already holds the database's write lock.
SELECT 1;

-- name: conn_insert
INSERT INTO connections (id, user_id, source_chunk_id, target_chunk_id, source_document_id,
                         target_document_id, engine_scores, combined_score, reason,
                         user_validated, starred, rejected, decided_at, found_at)
SELECT :id, :user_id, :source_chunk_id, :target_chunk_id, :source_document_id,
       :target_document_id, :engine_scores, :combined_score, :reason,
       :validated, :starred, :rejected, :decided_at, :found_at
WHERE NOT EXISTS (SELECT 1 FROM connections WHERE {{conn_same_pair}})
  AND EXISTS (SELECT 1 FROM chunks WHERE id = :source_chunk_id AND user_id = :user_id
                AND document_id = :source_document_id)
  AND EXISTS (SELECT 1 FROM chunks WHERE id = :target_chunk_id AND user_id = :user_id
                AND document_id = :target_document_id)
ON CONFLICT (source_chunk_id, target_chunk_id) DO NOTHING;

-- name: conn_confirm
UPDATE connections SET found_at = :found_at WHERE {{conn_same_pair}};

-- name: conn_rescore
UPDATE connections
SET engine_scores = :engine_scores, combined_score = :combined_score, reason = :reason
WHERE {{conn_same_pair}}
  AND (:all_rows OR (user_validated = 0 AND starred = 0 AND rejected = 0));

-- name: conn_find_pair
SELECT id, user_validated, starred, rejected FROM connections WHERE {{conn_same_pair}};

-- name: conn_mark_detected
UPDATE documents
SET connections_detected_at = :detected_at, connections_compared = :compared
WHERE id = :document_id AND user_id = :user_id;

-- name: conn_touch_content
UPDATE documents SET content_changed_at = :changed_at
WHERE id = :document_id AND user_id = :user_id;

-- name: conn_detection_info
SELECT d.id, d.status, d.connections_detected_at, d.connections_compared,
       (SELECT count(*) FROM connections c
        WHERE c.user_id = d.user_id AND c.rejected = 0
          AND (c.source_document_id = d.id OR c.target_document_id = d.id)) AS visible,
       (SELECT count(*) FROM connections c
        WHERE c.user_id = d.user_id AND c.rejected = 1
          AND (c.source_document_id = d.id OR c.target_document_id = d.id)) AS rejected
FROM documents d
WHERE d.id = :document_id AND d.user_id = :user_id;

-- name: conn_decided_of_document
SELECT c.*, sc.text AS source_text, tc.text AS target_text
FROM connections c
JOIN chunks sc ON sc.id = c.source_chunk_id
JOIN chunks tc ON tc.id = c.target_chunk_id
WHERE c.user_id = :user_id
  AND (c.source_document_id = :document_id OR c.target_document_id = :document_id)
  AND (c.user_validated = 1 OR c.starred = 1 OR c.rejected = 1)
ORDER BY c.id;

-- name: conn_count_visible
SELECT count(*) AS n FROM connections
WHERE user_id = :user_id AND rejected = 0 AND {{conn_touches_documents}};

-- name: conn_new_documents
SELECT d.id FROM documents d JOIN documents me ON me.user_id = d.user_id
WHERE me.id = :document_id AND me.user_id = :user_id AND d.id <> me.id
  AND (me.connections_detected_at IS NULL
       OR max(COALESCE(d.content_changed_at, d.created_at), d.updated_at, d.created_at)
          > me.connections_detected_at)
ORDER BY d.id;

-- name: conn_chunk_texts
SELECT id, document_id, text FROM chunks
WHERE user_id = :user_id AND document_id IN (SELECT value FROM json_each(:document_ids))
ORDER BY document_id, chunk_index;
