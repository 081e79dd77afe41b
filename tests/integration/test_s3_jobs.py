"""The pause/resume/checkpoint suite with checkpoints in a real S3-compatible server
(SeaweedFS, started by tests/s3server.py), on both job stores."""

from __future__ import annotations

import secrets

from rhizome.jobs.admin import Admin
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from tests.conftest import cli_env, run_cli
from tests.helpers import PauseAfterPuts, make_worker, noop_digest, noop_units
from tests.s3server import S3Server

STAGES, UNITS = 3, 2


def test_pause_resume_in_another_process_with_s3_checkpoints(
    store: SqlJobStore, db_url: str, s3_server: S3Server, tmp_path: object
) -> None:
    prefix = f"jobs-{secrets.token_hex(4)}"
    storage = s3_server.storage(prefix)
    [job] = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])
    make_worker(store, PauseAfterPuts(storage, store, 3), burst=True).run()
    paused = store.get(job.id)
    assert paused.status is JobStatus.PAUSED
    assert paused.last_checkpoint_path and storage.exists(paused.last_checkpoint_path)

    Admin(store, storage).resume(job.id)
    env = cli_env(db_url, tmp_path, **s3_server.env())  # type: ignore[arg-type]
    env["RHIZOME_STORAGE_URL"] = s3_server.url(prefix)
    result = run_cli(["worker", "--burst"], env)
    assert result.returncode == 0, result.stderr
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data is not None
    assert done.output_data["digest"] == noop_digest(STAGES, UNITS)
    # safe point 3 is the end of step-1 (after its two units)
    assert done.output_data["executed"] == noop_units(STAGES, UNITS)[2:]
    assert storage.list("jobs/") == []  # removed from the bucket on completion


def test_altered_s3_checkpoint_starts_fresh(store: SqlJobStore, s3_server: S3Server) -> None:
    storage = s3_server.storage(f"jobs-{secrets.token_hex(4)}")
    [job] = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])
    make_worker(store, PauseAfterPuts(storage, store, 2), burst=True).run()
    path = store.get(job.id).last_checkpoint_path
    assert path is not None
    storage.put(path, storage.get(path)[:-3])  # truncated
    Admin(store, storage).resume(job.id)
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data and done.output_data["resumed_from"] is None
    assert any("hash does not match" in (e.message or "") for e in store.events(job.id))


def test_admin_deletes_s3_checkpoints(store: SqlJobStore, s3_server: S3Server) -> None:
    storage = s3_server.storage(f"jobs-{secrets.token_hex(4)}")
    [job] = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])
    make_worker(store, PauseAfterPuts(storage, store, 2), burst=True).run()
    assert storage.list(f"jobs/{job.id}")
    orphan = "jobs/22222222-2222-2222-2222-222222222222/stage-step-1.json"
    storage.put(orphan, b"{}")
    admin = Admin(store, storage)
    assert admin.fix_orphans()["removed_checkpoint_files"] == 1
    admin.delete(job.id)
    assert storage.list("jobs") == []
