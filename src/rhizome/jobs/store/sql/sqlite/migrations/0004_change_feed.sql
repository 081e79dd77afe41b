-- Change feed for live UIs: readers watch PRAGMA data_version and read what changed.
CREATE INDEX background_jobs_updated_idx ON background_jobs (updated_at);
CREATE INDEX background_jobs_heartbeat_idx ON background_jobs (heartbeat_at)
    WHERE status = 'processing';
