"""The private PostgreSQL cluster of tests/pgcluster.py: started as a non-root user on a
free port, it survives fast and immediate restarts with its committed data, and goes away
completely afterwards."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.conftest import IN_CI
from tests.pgcluster import PgCluster, available, pg_cluster, pid_alive

pytestmark = pytest.mark.timeout(180)


def _skip_or_fail() -> None:
    why = available()
    if why is not None:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL cluster is required in CI: {why}")
        pytest.skip(why)


def test_start_connect_restart_fast_and_immediate() -> None:
    _skip_or_fail()
    with pg_cluster() as pg:
        assert isinstance(pg, PgCluster) and pg.running()
        pid = pg.postmaster_pid()
        assert pid is not None
        if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the postgres user
            assert os.stat(f"/proc/{pid}").st_uid != 0
        url = pg.create_database("t")
        assert url.endswith(f":{pg.port}/t")
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE TABLE rows (n int)")
        conn.execute("INSERT INTO rows VALUES (1)")
        assert conn.execute("SHOW fsync").fetchone() == ("off",)

        took = pg.restart("fast")
        assert took >= 0 and pg.postmaster_pid() != pid
        with pytest.raises(psycopg.OperationalError):  # the old session was ended
            conn.execute("SELECT 1")
        conn.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO rows VALUES (2)")

        pg.restart("immediate")  # no shutdown checkpoint: crash recovery from the WAL
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT n FROM rows ORDER BY n").fetchall() == [(1,), (2,)]
        assert pg.restarts == 2
        base, final_pid = pg.base, pg.postmaster_pid()
    assert not base.exists()
    assert final_pid is not None and not pid_alive(final_pid)


def test_cleans_up_when_the_block_raises() -> None:
    _skip_or_fail()
    with pytest.raises(RuntimeError, match="boom"), pg_cluster() as pg:
        base, pid = pg.base, pg.postmaster_pid()
        raise RuntimeError("boom")
    assert not base.exists()
    assert pid is not None and not pid_alive(pid)
