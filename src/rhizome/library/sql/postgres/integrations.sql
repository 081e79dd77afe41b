-- Named queries of the integrations (issue 15), PostgreSQL: Obsidian vault settings and note
-- sync state (vault_), the re-chunk swap (sync_), the review of suggested highlight
-- passages (review_) and the Readwise ledger (rw_). Every query is scoped by user_id.

-- name: vault_get_settings
SELECT * FROM vault_settings WHERE user_id = %(user_id)s;

-- name: vault_put_settings
INSERT INTO vault_settings (user_id, vault_path, subfolder, vault_name, export_highlights,
                            export_connections, updated_at)
VALUES (%(user_id)s, %(vault_path)s, %(subfolder)s, %(vault_name)s, %(export_highlights)s,
        %(export_connections)s, now())
ON CONFLICT (user_id) DO UPDATE
SET vault_path = excluded.vault_path, subfolder = excluded.subfolder,
    vault_name = excluded.vault_name, export_highlights = excluded.export_highlights,
    export_connections = excluded.export_connections, updated_at = excluded.updated_at;

-- name: vault_forget_notes
DELETE FROM obsidian_notes WHERE user_id = %(user_id)s;

-- fragment: vault_note_columns
n.*, d.title AS title, d.author AS author, d.status AS doc_status,
d.content_changed_at AS content_changed_at, d.created_at AS doc_created_at

-- name: vault_notes
-- Every note without its last result (a sync reads this for the whole vault).
SELECT n.user_id, n.note_path, n.document_id, n.status, n.vault_hash, n.vault_mtime_ns,
       n.vault_size, n.body_hash, n.library_sig, n.derived_sig, n.message, n.last_job_id,
       n.last_item, n.synced_at, d.title AS title, d.author AS author,
       d.status AS doc_status, d.content_changed_at AS content_changed_at,
       d.created_at AS doc_created_at
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = %(user_id)s
ORDER BY n.note_path;

-- name: vault_conflicts
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = %(user_id)s AND n.status = 'conflict'
ORDER BY n.note_path
LIMIT 1000;

-- name: vault_note_of_document
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = %(user_id)s AND n.document_id = %(document_id)s;

-- name: vault_note_at
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = %(user_id)s AND n.note_path = %(note_path)s;

-- name: vault_note_paths
SELECT note_path, document_id FROM obsidian_notes WHERE user_id = %(user_id)s;

-- name: vault_delete_note
DELETE FROM obsidian_notes WHERE user_id = %(user_id)s AND note_path = %(note_path)s;

-- name: vault_release_document
DELETE FROM obsidian_notes
WHERE user_id = %(user_id)s AND document_id = %(document_id)s AND note_path <> %(note_path)s;

-- name: vault_upsert_note
INSERT INTO obsidian_notes (user_id, note_path, document_id, status, vault_hash,
                            vault_mtime_ns, vault_size, body_hash, library_sig, derived_sig,
                            message, last_job_id, last_item, last_result, synced_at,
                            updated_at)
SELECT %(user_id)s, %(note_path)s, %(document_id)s::uuid, %(status)s, %(vault_hash)s,
       %(vault_mtime_ns)s::bigint, %(vault_size)s::bigint, %(body_hash)s, %(library_sig)s,
       %(derived_sig)s, %(message)s, %(last_job_id)s, %(last_item)s::integer,
       %(last_result)s::jsonb, %(synced_at)s::timestamptz, now()
WHERE %(document_id)s::uuid IS NULL
   OR EXISTS (SELECT 1 FROM documents WHERE id = %(document_id)s::uuid AND user_id = %(user_id)s)
ON CONFLICT (user_id, note_path) DO UPDATE
SET document_id = excluded.document_id, status = excluded.status,
    vault_hash = excluded.vault_hash, vault_mtime_ns = excluded.vault_mtime_ns,
    vault_size = excluded.vault_size, body_hash = excluded.body_hash,
    library_sig = excluded.library_sig, derived_sig = excluded.derived_sig,
    message = excluded.message, last_job_id = excluded.last_job_id,
    last_item = excluded.last_item, last_result = excluded.last_result,
    synced_at = excluded.synced_at, updated_at = excluded.updated_at;

-- name: vault_job_results
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = %(user_id)s AND n.last_job_id = %(job_id)s
ORDER BY n.last_item, n.note_path;

-- name: vault_note_counts
SELECT status, count(*) AS n FROM obsidian_notes WHERE user_id = %(user_id)s GROUP BY status;

-- name: vault_highlight_sigs
SELECT document_id, count(*) AS n, max(updated_at)::text AS latest FROM highlights
WHERE user_id = %(user_id)s AND document_id IS NOT NULL
  AND (%(document_id)s::uuid IS NULL OR document_id = %(document_id)s::uuid)
GROUP BY document_id;

-- name: vault_connection_sigs
SELECT document_id, count(*) AS n, max(latest) AS latest FROM (
    SELECT source_document_id AS document_id,
           COALESCE(decided_at, created_at)::text || ':' || rejected::text || ':'
             || COALESCE(remap_status, '') AS latest
    FROM connections WHERE user_id = %(user_id)s
    UNION ALL
    SELECT target_document_id, COALESCE(decided_at, created_at)::text || ':' || rejected::text
             || ':' || COALESCE(remap_status, '')
    FROM connections WHERE user_id = %(user_id)s
) AS sides
WHERE %(document_id)s::uuid IS NULL OR document_id = %(document_id)s::uuid
GROUP BY document_id;

-- name: vault_document_row
SELECT id, title, author, status AS doc_status, content_changed_at, created_at AS doc_created_at,
       metadata
FROM documents WHERE id = %(document_id)s AND user_id = %(user_id)s;

-- name: sync_mark_remap
UPDATE connections
SET remap_status = %(remap_status)s, remap_score = %(remap_score)s, remap_text = %(remap_text)s
WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: sync_update_highlight
UPDATE highlights
SET start_offset = %(start_offset)s, end_offset = %(end_offset)s, text = %(text)s,
    original_text = COALESCE(original_text, %(original_text)s), status = %(status)s,
    match_method = %(match_method)s, confidence = %(confidence)s, match_reason = %(match_reason)s,
    chunk_ids = %(chunk_ids)s::jsonb, chunk_id = %(chunk_id)s::uuid,
    updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: sync_remapped_connections
SELECT c.id, c.remap_status, c.remap_score, c.remap_text, c.combined_score,
       c.source_document_id, c.target_document_id, sd.title AS source_title,
       td.title AS target_title
FROM connections c
JOIN documents sd ON sd.id = c.source_document_id
JOIN documents td ON td.id = c.target_document_id
WHERE c.user_id = %(user_id)s AND c.remap_status IN ('review', 'lost')
ORDER BY c.remap_status, c.remap_score, c.id
LIMIT %(limit)s;

-- name: sync_clear_remap
UPDATE connections SET remap_status = NULL
WHERE id = %(id)s AND user_id = %(user_id)s AND remap_status IS NOT NULL;

-- fragment: review_columns
h.*, d.title AS document_title, d.storage_folder AS storage_folder

-- name: review_list
SELECT {{review_columns}}
FROM highlights h JOIN documents d ON d.id = h.document_id AND d.user_id = h.user_id
WHERE h.user_id = %(user_id)s AND h.status = 'needs_review'
  AND (%(document_id)s::uuid IS NULL OR h.document_id = %(document_id)s::uuid)
ORDER BY d.title, h.start_offset, h.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: review_count
SELECT count(*) AS n FROM highlights WHERE user_id = %(user_id)s AND status = 'needs_review';

-- name: review_get
SELECT {{review_columns}}
FROM highlights h JOIN documents d ON d.id = h.document_id AND d.user_id = h.user_id
WHERE h.user_id = %(user_id)s AND h.id = %(id)s;

-- name: review_decide
UPDATE highlights
SET status = %(status)s, text = %(text)s, original_text = COALESCE(original_text, %(original_text)s),
    start_offset = %(start_offset)s, end_offset = %(end_offset)s, chunk_ids = %(chunk_ids)s::jsonb,
    chunk_id = %(chunk_id)s::uuid, match_method = %(match_method)s, confidence = %(confidence)s,
    match_reason = %(match_reason)s, updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s AND status = 'needs_review';

-- name: review_ledger
UPDATE readwise_highlights
SET status = %(status)s, reason = %(reason)s, confidence = %(confidence)s,
    updated_at = now()
WHERE user_id = %(user_id)s AND highlight_id = %(highlight_id)s;

-- name: rw_items_by_ids
SELECT * FROM readwise_highlights
WHERE user_id = %(user_id)s AND external_id = ANY(%(ids)s::text[]);

-- name: rw_upsert_item
INSERT INTO readwise_highlights (user_id, external_id, readwise_id, book_title, book_author,
                                 text, note, color, tags, location, location_type,
                                 highlighted_at, status, reason, document_id, highlight_id,
                                 book_score, confidence, match_method, import_job_id)
VALUES (%(user_id)s, %(external_id)s, %(readwise_id)s, %(book_title)s, %(book_author)s,
        %(text)s, %(note)s,
        %(color)s, %(tags)s::jsonb, %(location)s, %(location_type)s, %(highlighted_at)s, %(status)s,
        %(reason)s, %(document_id)s::uuid, %(highlight_id)s::uuid, %(book_score)s, %(confidence)s, %(match_method)s, %(import_job_id)s)
ON CONFLICT (user_id, external_id) DO UPDATE
SET readwise_id = excluded.readwise_id, book_title = excluded.book_title,
    book_author = excluded.book_author, text = excluded.text, note = excluded.note,
    color = excluded.color, tags = excluded.tags, location = excluded.location,
    location_type = excluded.location_type, highlighted_at = excluded.highlighted_at,
    status = excluded.status, reason = excluded.reason, document_id = excluded.document_id,
    highlight_id = excluded.highlight_id, book_score = excluded.book_score,
    confidence = excluded.confidence, match_method = excluded.match_method,
    import_job_id = excluded.import_job_id,
    updated_at = now();

-- name: rw_items
SELECT r.*, d.title AS document_title FROM readwise_highlights r
LEFT JOIN documents d ON d.id = r.document_id AND d.user_id = r.user_id
WHERE r.user_id = %(user_id)s
  AND (%(job_id)s::text IS NULL OR r.import_job_id = %(job_id)s)
  AND (%(status)s::text IS NULL OR r.status = %(status)s)
ORDER BY r.book_title, r.location, r.external_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: rw_item_counts
SELECT status, count(*) AS n FROM readwise_highlights
WHERE user_id = %(user_id)s AND (%(job_id)s::text IS NULL OR import_job_id = %(job_id)s)
GROUP BY status;

-- name: rw_document_texts
SELECT id, text, original_text FROM highlights
WHERE user_id = %(user_id)s AND document_id = %(document_id)s AND source = 'readwise';

-- name: rw_insert_highlight
INSERT INTO highlights (id, user_id, document_id, chunk_id, chunk_ids, text, note, color, tags,
                        source, external_id, start_offset, end_offset, match_method,
                        confidence, status, match_reason, original_text, created_at,
                        updated_at)
SELECT %(id)s, %(user_id)s, %(document_id)s, %(chunk_id)s, %(chunk_ids)s::jsonb, %(text)s,
       %(note)s, %(color)s, %(tags)s::jsonb, 'readwise', %(external_id)s, %(start_offset)s,
       %(end_offset)s, %(match_method)s, %(confidence)s, %(status)s, %(match_reason)s,
       %(original_text)s, COALESCE(%(created_at)s::timestamptz, now()),
       now()
WHERE EXISTS (SELECT 1 FROM documents WHERE id = %(document_id)s AND user_id = %(user_id)s)
ON CONFLICT DO NOTHING;

-- name: rw_highlight_by_external
SELECT id FROM highlights
WHERE user_id = %(user_id)s AND source = 'readwise' AND external_id = %(external_id)s;

-- name: rw_get_account
SELECT * FROM readwise_accounts WHERE user_id = %(user_id)s;

-- name: rw_put_token
INSERT INTO readwise_accounts (user_id, token, updated_at)
VALUES (%(user_id)s, %(token)s, now())
ON CONFLICT (user_id) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at;

-- name: rw_set_updated_after
INSERT INTO readwise_accounts (user_id, updated_after, last_import_at, updated_at)
VALUES (%(user_id)s, %(updated_after)s, now(),
        now())
ON CONFLICT (user_id) DO UPDATE
SET updated_after = excluded.updated_after, last_import_at = excluded.last_import_at,
    updated_at = excluded.updated_at;
