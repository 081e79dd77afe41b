-- Named queries of the integrations (issue 15), SQLite: Obsidian vault settings and note
-- sync state (vault_), the re-chunk swap (sync_), the review of suggested highlight
-- passages (review_) and the Readwise ledger (rw_). Every query is scoped by user_id.

-- name: vault_get_settings
SELECT * FROM vault_settings WHERE user_id = :user_id;

-- name: vault_put_settings
INSERT INTO vault_settings (user_id, vault_path, subfolder, vault_name, export_highlights,
                            export_connections, updated_at)
VALUES (:user_id, :vault_path, :subfolder, :vault_name, :export_highlights,
        :export_connections, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (user_id) DO UPDATE
SET vault_path = excluded.vault_path, subfolder = excluded.subfolder,
    vault_name = excluded.vault_name, export_highlights = excluded.export_highlights,
    export_connections = excluded.export_connections, updated_at = excluded.updated_at;

-- name: vault_forget_notes
DELETE FROM obsidian_notes WHERE user_id = :user_id;

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
WHERE n.user_id = :user_id
ORDER BY n.note_path;

-- name: vault_conflicts
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = :user_id AND n.status = 'conflict'
ORDER BY n.note_path
LIMIT 1000;

-- name: vault_note_of_document
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = :user_id AND n.document_id = :document_id;

-- name: vault_note_at
SELECT {{vault_note_columns}}
FROM obsidian_notes n LEFT JOIN documents d ON d.id = n.document_id AND d.user_id = n.user_id
WHERE n.user_id = :user_id AND n.note_path = :note_path;

-- name: vault_note_paths
SELECT note_path, document_id FROM obsidian_notes WHERE user_id = :user_id;

-- name: vault_delete_note
DELETE FROM obsidian_notes WHERE user_id = :user_id AND note_path = :note_path;

-- name: vault_release_document
DELETE FROM obsidian_notes
WHERE user_id = :user_id AND document_id = :document_id AND note_path <> :note_path;

-- name: vault_upsert_note
INSERT INTO obsidian_notes (user_id, note_path, document_id, status, vault_hash,
                            vault_mtime_ns, vault_size, body_hash, library_sig, derived_sig,
                            message, last_job_id, last_item, last_result, synced_at,
                            updated_at)
SELECT :user_id, :note_path, :document_id, :status, :vault_hash, :vault_mtime_ns,
       :vault_size, :body_hash, :library_sig, :derived_sig, :message, :last_job_id,
       :last_item, :last_result, :synced_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE :document_id IS NULL
   OR EXISTS (SELECT 1 FROM documents WHERE id = :document_id AND user_id = :user_id)
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
WHERE n.user_id = :user_id AND n.last_job_id = :job_id
ORDER BY n.last_item, n.note_path;

-- name: vault_note_counts
SELECT status, count(*) AS n FROM obsidian_notes WHERE user_id = :user_id GROUP BY status;

-- name: vault_highlight_sigs
SELECT document_id, count(*) AS n, max(updated_at) AS latest FROM highlights
WHERE user_id = :user_id AND document_id IS NOT NULL
  AND (:document_id IS NULL OR document_id = :document_id)
GROUP BY document_id;

-- name: vault_connection_sigs
SELECT document_id, count(*) AS n, max(latest) AS latest FROM (
    SELECT source_document_id AS document_id,
           COALESCE(decided_at, created_at) || ':' || rejected || ':'
             || COALESCE(remap_status, '') AS latest
    FROM connections WHERE user_id = :user_id
    UNION ALL
    SELECT target_document_id, COALESCE(decided_at, created_at) || ':' || rejected || ':'
             || COALESCE(remap_status, '')
    FROM connections WHERE user_id = :user_id
)
WHERE :document_id IS NULL OR document_id = :document_id
GROUP BY document_id;

-- name: vault_document_row
SELECT id, title, author, status AS doc_status, content_changed_at, created_at AS doc_created_at,
       metadata
FROM documents WHERE id = :document_id AND user_id = :user_id;

-- name: sync_mark_remap
UPDATE connections
SET remap_status = :remap_status, remap_score = :remap_score, remap_text = :remap_text
WHERE id = :id AND user_id = :user_id;

-- name: sync_update_highlight
UPDATE highlights
SET start_offset = :start_offset, end_offset = :end_offset, text = :text,
    original_text = COALESCE(original_text, :original_text), status = :status,
    match_method = :match_method, confidence = :confidence, match_reason = :match_reason,
    chunk_ids = :chunk_ids, chunk_id = :chunk_id,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND user_id = :user_id;

-- name: sync_remapped_connections
SELECT c.id, c.remap_status, c.remap_score, c.remap_text, c.combined_score,
       c.source_document_id, c.target_document_id, sd.title AS source_title,
       td.title AS target_title
FROM connections c
JOIN documents sd ON sd.id = c.source_document_id
JOIN documents td ON td.id = c.target_document_id
WHERE c.user_id = :user_id AND c.remap_status IN ('review', 'lost')
ORDER BY c.remap_status, c.remap_score, c.id
LIMIT :limit;

-- name: sync_clear_remap
UPDATE connections SET remap_status = NULL
WHERE id = :id AND user_id = :user_id AND remap_status IS NOT NULL;

-- fragment: review_columns
h.*, d.title AS document_title, d.storage_folder AS storage_folder

-- name: review_list
SELECT {{review_columns}}
FROM highlights h JOIN documents d ON d.id = h.document_id AND d.user_id = h.user_id
WHERE h.user_id = :user_id AND h.status = 'needs_review'
  AND (:document_id IS NULL OR h.document_id = :document_id)
ORDER BY d.title, h.start_offset, h.id
LIMIT :limit OFFSET :offset;

-- name: review_count
SELECT count(*) AS n FROM highlights WHERE user_id = :user_id AND status = 'needs_review';

-- name: review_get
SELECT {{review_columns}}
FROM highlights h JOIN documents d ON d.id = h.document_id AND d.user_id = h.user_id
WHERE h.user_id = :user_id AND h.id = :id;

-- name: review_decide
UPDATE highlights
SET status = :status, text = :text, original_text = COALESCE(original_text, :original_text),
    start_offset = :start_offset, end_offset = :end_offset, chunk_ids = :chunk_ids,
    chunk_id = :chunk_id, match_method = :match_method, confidence = :confidence,
    match_reason = :match_reason, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND user_id = :user_id AND status = 'needs_review';

-- name: review_ledger
UPDATE readwise_highlights
SET status = :status, reason = :reason, confidence = :confidence,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE user_id = :user_id AND highlight_id = :highlight_id;

-- name: rw_items_by_ids
SELECT * FROM readwise_highlights
WHERE user_id = :user_id AND external_id IN (SELECT value FROM json_each(:ids));

-- name: rw_upsert_item
INSERT INTO readwise_highlights (user_id, external_id, readwise_id, book_title, book_author,
                                 text, note, color, tags, location, location_type,
                                 highlighted_at, status, reason, document_id, highlight_id,
                                 book_score, confidence, match_method, import_job_id)
VALUES (:user_id, :external_id, :readwise_id, :book_title, :book_author, :text, :note,
        :color, :tags, :location, :location_type, :highlighted_at, :status, :reason,
        :document_id, :highlight_id, :book_score, :confidence, :match_method, :import_job_id)
ON CONFLICT (user_id, external_id) DO UPDATE
SET readwise_id = excluded.readwise_id, book_title = excluded.book_title,
    book_author = excluded.book_author, text = excluded.text, note = excluded.note,
    color = excluded.color, tags = excluded.tags, location = excluded.location,
    location_type = excluded.location_type, highlighted_at = excluded.highlighted_at,
    status = excluded.status, reason = excluded.reason, document_id = excluded.document_id,
    highlight_id = excluded.highlight_id, book_score = excluded.book_score,
    confidence = excluded.confidence, match_method = excluded.match_method,
    import_job_id = excluded.import_job_id,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- name: rw_items
SELECT r.*, d.title AS document_title FROM readwise_highlights r
LEFT JOIN documents d ON d.id = r.document_id AND d.user_id = r.user_id
WHERE r.user_id = :user_id
  AND (:job_id IS NULL OR r.import_job_id = :job_id)
  AND (:status IS NULL OR r.status = :status)
ORDER BY r.book_title, r.location, r.external_id
LIMIT :limit OFFSET :offset;

-- name: rw_item_counts
SELECT status, count(*) AS n FROM readwise_highlights
WHERE user_id = :user_id AND (:job_id IS NULL OR import_job_id = :job_id)
GROUP BY status;

-- name: rw_document_texts
SELECT id, text, original_text FROM highlights
WHERE user_id = :user_id AND document_id = :document_id AND source = 'readwise';

-- name: rw_insert_highlight
INSERT INTO highlights (id, user_id, document_id, chunk_id, chunk_ids, text, note, color, tags,
                        source, external_id, start_offset, end_offset, match_method,
                        confidence, status, match_reason, original_text, created_at,
                        updated_at)
SELECT :id, :user_id, :document_id, :chunk_id, :chunk_ids, :text, :note, :color, :tags,
       'readwise', :external_id, :start_offset, :end_offset, :match_method, :confidence,
       :status, :match_reason, :original_text,
       COALESCE(:created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE EXISTS (SELECT 1 FROM documents WHERE id = :document_id AND user_id = :user_id)
ON CONFLICT DO NOTHING;

-- name: rw_highlight_by_external
SELECT id FROM highlights
WHERE user_id = :user_id AND source = 'readwise' AND external_id = :external_id;

-- name: rw_get_account
SELECT * FROM readwise_accounts WHERE user_id = :user_id;

-- name: rw_put_token
INSERT INTO readwise_accounts (user_id, token, updated_at)
VALUES (:user_id, :token, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (user_id) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at;

-- name: rw_set_updated_after
INSERT INTO readwise_accounts (user_id, updated_after, last_import_at, updated_at)
VALUES (:user_id, :updated_after, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (user_id) DO UPDATE
SET updated_after = excluded.updated_after, last_import_at = excluded.last_import_at,
    updated_at = excluded.updated_at;
