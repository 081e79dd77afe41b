-- Reliability (issue 17).
-- takeovers: how often the job's lease ran out and it was handed to another worker since
-- it was last started by a person (resume, retry); past max_takeovers the reaper fails it
-- as a crash loop instead of handing it on.
-- infra_retries: how often the job was set aside because the storage or the database
-- failed under it (it waits, then continues from its checkpoint; never counted as a retry).
ALTER TABLE background_jobs ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;
ALTER TABLE background_jobs ADD COLUMN infra_retries INTEGER NOT NULL DEFAULT 0;
