-- Named queries of connection curation (issue 14), PostgreSQL. Every query is scoped by
-- user_id. Names start with conn_ (one namespace with queries.sql).

-- fragment: conn_where_base
c.user_id = %(user_id)s
AND (%(document_id)s::uuid IS NULL OR c.source_document_id = %(document_id)s::uuid
     OR c.target_document_id = %(document_id)s::uuid)
AND (%(engine)s::text IS NULL
     OR COALESCE((c.engine_scores ->> %(engine)s::text)::float8, 0) > 0)
AND (%(min_score)s::float8 IS NULL OR c.combined_score >= %(min_score)s::float8)

-- fragment: conn_where_state
(CASE %(state)s::text
   WHEN 'all' THEN true
   WHEN 'validated' THEN c.user_validated AND NOT c.rejected
   WHEN 'starred' THEN c.starred AND NOT c.rejected
   WHEN 'rejected' THEN c.rejected
   WHEN 'undecided' THEN NOT c.user_validated AND NOT c.starred AND NOT c.rejected
   ELSE NOT c.rejected
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
user_id = %(user_id)s
AND ((source_chunk_id = %(source_chunk_id)s::uuid AND target_chunk_id = %(target_chunk_id)s::uuid)
  OR (source_chunk_id = %(target_chunk_id)s::uuid AND target_chunk_id = %(source_chunk_id)s::uuid))

-- fragment: conn_touches_documents
(source_document_id = ANY(%(document_ids)s::uuid[])
 OR target_document_id = ANY(%(document_ids)s::uuid[]))

-- name: conn_search
SELECT {{conn_detail_columns}}
FROM connections c
{{conn_detail_joins}}
WHERE {{conn_where_base}} AND {{conn_where_state}}
ORDER BY
  CASE WHEN %(sort)s::text = 'score' THEN c.combined_score END DESC,
  CASE WHEN %(sort)s::text = 'score_asc' THEN c.combined_score END ASC,
  CASE WHEN %(sort)s::text = 'newest' THEN c.created_at END DESC,
  CASE WHEN %(sort)s::text = 'decided' THEN c.decided_at END DESC NULLS LAST,
  CASE WHEN %(sort)s::text = 'document' THEN sd.title END ASC,
  CASE WHEN %(sort)s::text = 'document' THEN td.title END ASC,
  c.combined_score DESC, c.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: conn_search_count
SELECT count(*) AS n FROM connections c
WHERE {{conn_where_base}} AND {{conn_where_state}};

-- name: conn_state_counts
SELECT count(*) AS total,
       count(*) FILTER (WHERE NOT c.rejected) AS visible,
       count(*) FILTER (WHERE NOT c.rejected AND c.user_validated) AS validated,
       count(*) FILTER (WHERE NOT c.rejected AND c.starred) AS starred,
       count(*) FILTER (WHERE c.rejected) AS rejected,
       count(*) FILTER (WHERE NOT c.rejected AND NOT c.user_validated AND NOT c.starred)
           AS undecided
FROM connections c
WHERE {{conn_where_base}};

-- name: conn_get
SELECT {{conn_detail_columns}}
FROM connections c
{{conn_detail_joins}}
WHERE c.id = %(id)s::uuid AND c.user_id = %(user_id)s;

-- name: conn_set_decision
UPDATE connections
SET user_validated = %(validated)s, starred = %(starred)s, rejected = %(rejected)s,
    decided_at = %(decided_at)s::timestamptz
WHERE id = %(id)s::uuid AND user_id = %(user_id)s
RETURNING id;

-- name: conn_rejection_add
INSERT INTO connection_rejections (user_id, pair_key, source_chunk_id, target_chunk_id,
                                   source_document_id, target_document_id, created_at)
VALUES (%(user_id)s, %(pair_key)s, %(source_chunk_id)s::uuid, %(target_chunk_id)s::uuid,
        %(source_document_id)s::uuid, %(target_document_id)s::uuid,
        %(created_at)s::timestamptz)
ON CONFLICT (user_id, pair_key) DO UPDATE
SET source_chunk_id = excluded.source_chunk_id,
    target_chunk_id = excluded.target_chunk_id,
    source_document_id = excluded.source_document_id,
    target_document_id = excluded.target_document_id;

-- name: conn_rejection_remove
DELETE FROM connection_rejections
WHERE user_id = %(user_id)s AND pair_key = %(pair_key)s;

-- name: conn_rejection_keys
SELECT pair_key, created_at FROM connection_rejections WHERE user_id = %(user_id)s;

-- name: conn_rejections_of_document
SELECT * FROM connection_rejections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s::uuid
       OR target_document_id = %(document_id)s::uuid);

-- name: conn_visible_pairs
SELECT source_chunk_id, target_chunk_id FROM connections
WHERE user_id = %(user_id)s AND NOT rejected
  AND (source_document_id = %(document_id)s::uuid
       OR target_document_id = %(document_id)s::uuid);

-- name: conn_delete_replaceable
DELETE FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s::uuid
       OR target_document_id = %(document_id)s::uuid)
  AND NOT user_validated AND NOT starred
  AND (NOT %(keep_rejected)s::boolean OR NOT rejected)
  AND (found_at IS NULL OR found_at < %(since)s::timestamptz)
  AND NOT ((CASE WHEN source_document_id = %(document_id)s::uuid THEN target_document_id
                 ELSE source_document_id END) = ANY(%(pending)s::uuid[]));

-- name: conn_any_of_document
SELECT 1 AS found FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s::uuid OR target_document_id = %(document_id)s::uuid)
LIMIT 1;

-- name: conn_lock_user
-- Every transaction that inserts connections takes this lock first (released at its end):
-- the insert's NOT EXISTS check of the reversed pair is then never raced by another
-- transaction of the same user (two documents detected at once, each finding the pair
-- from its own side, would otherwise both insert it).
SELECT pg_advisory_xact_lock(hashtext('rhizome.connections'), hashtext(%(user_id)s));

-- name: conn_insert
INSERT INTO connections (id, user_id, source_chunk_id, target_chunk_id, source_document_id,
                         target_document_id, engine_scores, combined_score, reason,
                         user_validated, starred, rejected, decided_at, found_at)
SELECT %(id)s::uuid, %(user_id)s, %(source_chunk_id)s::uuid, %(target_chunk_id)s::uuid,
       %(source_document_id)s::uuid, %(target_document_id)s::uuid,
       %(engine_scores)s::jsonb, %(combined_score)s::float8, %(reason)s::text,
       %(validated)s::boolean, %(starred)s::boolean, %(rejected)s::boolean,
       %(decided_at)s::timestamptz, %(found_at)s::timestamptz
WHERE NOT EXISTS (SELECT 1 FROM connections WHERE {{conn_same_pair}})
  AND EXISTS (SELECT 1 FROM chunks WHERE id = %(source_chunk_id)s::uuid
                AND user_id = %(user_id)s AND document_id = %(source_document_id)s::uuid)
  AND EXISTS (SELECT 1 FROM chunks WHERE id = %(target_chunk_id)s::uuid
                AND user_id = %(user_id)s AND document_id = %(target_document_id)s::uuid)
ON CONFLICT (source_chunk_id, target_chunk_id) DO NOTHING;

-- name: conn_confirm
UPDATE connections SET found_at = %(found_at)s::timestamptz WHERE {{conn_same_pair}};

-- name: conn_rescore
UPDATE connections
SET engine_scores = %(engine_scores)s::jsonb, combined_score = %(combined_score)s::float8,
    reason = %(reason)s::text
WHERE {{conn_same_pair}}
  AND (%(all_rows)s::boolean OR (NOT user_validated AND NOT starred AND NOT rejected));

-- name: conn_find_pair
SELECT id, user_validated, starred, rejected FROM connections WHERE {{conn_same_pair}};

-- name: conn_mark_detected
UPDATE documents
SET connections_detected_at = %(detected_at)s::timestamptz,
    connections_compared = %(compared)s
WHERE id = %(document_id)s::uuid AND user_id = %(user_id)s;

-- name: conn_touch_content
UPDATE documents SET content_changed_at = %(changed_at)s::timestamptz
WHERE id = %(document_id)s::uuid AND user_id = %(user_id)s;

-- name: conn_detection_info
SELECT d.id, d.status, d.connections_detected_at, d.connections_compared,
       (SELECT count(*) FROM connections c
        WHERE c.user_id = d.user_id AND NOT c.rejected
          AND (c.source_document_id = d.id OR c.target_document_id = d.id)) AS visible,
       (SELECT count(*) FROM connections c
        WHERE c.user_id = d.user_id AND c.rejected
          AND (c.source_document_id = d.id OR c.target_document_id = d.id)) AS rejected
FROM documents d
WHERE d.id = %(document_id)s::uuid AND d.user_id = %(user_id)s;

-- name: conn_decided_of_document
SELECT c.*, sc.text AS source_text, tc.text AS target_text
FROM connections c
JOIN chunks sc ON sc.id = c.source_chunk_id
JOIN chunks tc ON tc.id = c.target_chunk_id
WHERE c.user_id = %(user_id)s
  AND (c.source_document_id = %(document_id)s::uuid
       OR c.target_document_id = %(document_id)s::uuid)
  AND (c.user_validated OR c.starred OR c.rejected)
ORDER BY c.id;

-- name: conn_count_visible
SELECT count(*) AS n FROM connections
WHERE user_id = %(user_id)s AND NOT rejected AND {{conn_touches_documents}};

-- name: conn_new_documents
SELECT d.id FROM documents d JOIN documents me ON me.user_id = d.user_id
WHERE me.id = %(document_id)s::uuid AND me.user_id = %(user_id)s AND d.id <> me.id
  AND (me.connections_detected_at IS NULL
       OR GREATEST(d.content_changed_at, d.updated_at, d.created_at)
          > me.connections_detected_at)
ORDER BY d.id;

-- name: conn_chunk_texts
SELECT id, document_id, text FROM chunks
WHERE user_id = %(user_id)s AND document_id = ANY(%(document_ids)s::uuid[])
ORDER BY document_id, chunk_index;
