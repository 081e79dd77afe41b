"""The Procrastinate side of the queue benchmark: an app with one no-op task.

``PQ_DSN`` is the PostgreSQL connection string; ``PQ_POOL_MAX`` the pool size (a worker
needs one connection per concurrent job plus one for LISTEN; the default pool of
psycopg_pool is only 4 connections).
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

app = App(
    connector=PsycopgConnector(
        conninfo=os.environ["PQ_DSN"],
        min_size=1,
        max_size=int(os.environ.get("PQ_POOL_MAX", "12")),
    )
)


@app.task(name="noop")
async def noop() -> None:
    """The equivalent of rhizome's ``noop`` with input ``{}``: does nothing."""
    return None
