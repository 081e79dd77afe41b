-- Jobs by the entity they work on (PostgreSQL).

-- name: latest_job_per_entity
-- The newest job of each of :entity_ids: what a page of documents shows.
SELECT DISTINCT ON (j.entity_id) j.* FROM background_jobs j
WHERE j.entity_type = %(entity_type)s
  AND j.entity_id = ANY(%(entity_ids)s::text[])
  AND (%(user_id)s::text IS NULL OR j.user_id = %(user_id)s)
ORDER BY j.entity_id, j.created_at DESC, j.id DESC;
