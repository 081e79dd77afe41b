-- Queue controls: pause claiming for the whole queue ('*') or for one job type.
CREATE TABLE queue_controls (
    job_type   TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
