-- Change feed for live UIs: one NOTIFY per statement that touches jobs or their timeline
-- (PostgreSQL folds identical notifications of one transaction into one).
CREATE INDEX background_jobs_updated_idx ON background_jobs (updated_at);
CREATE INDEX background_jobs_heartbeat_idx ON background_jobs (heartbeat_at)
    WHERE status = 'processing';

CREATE FUNCTION rhizome_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rhizome_changes', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER background_jobs_changed
    AFTER INSERT OR UPDATE OR DELETE ON background_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_notify_changes();
CREATE TRIGGER job_events_changed
    AFTER INSERT ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_notify_changes();
