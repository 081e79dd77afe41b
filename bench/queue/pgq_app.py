"""The pgqueuer side of the queue benchmark: a factory with one no-op entrypoint.

``PGQ_DSN`` is the PostgreSQL connection string. The worker is started the way
pgqueuer's documentation shows, ``asyncio.run(pgqueuer.run("pgq_app:create"))``, with
every option at its default (batch size 10, no concurrency cap, one asyncpg connection).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.models import Job


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(os.environ["PGQ_DSN"])
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """The equivalent of rhizome's ``noop`` with input ``{}``: does nothing."""
        return None

    try:
        yield pgq
    finally:
        await conn.close()
