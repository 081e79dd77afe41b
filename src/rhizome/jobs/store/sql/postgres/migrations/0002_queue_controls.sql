-- Queue controls: pause claiming for the whole queue ('*') or for one job type.
CREATE TABLE queue_controls (
    job_type   text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    reason     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
