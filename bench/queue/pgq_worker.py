"""A pgqueuer worker process for the benchmark.

    python pgq_worker.py [--drain]

Runs ``pgqueuer.run("pgq_app:create")`` with pgqueuer's defaults (batch size 10, no
concurrency cap). ``--drain`` is pgqueuer's ``mode=drain``: exit once the queue is empty
and in-flight jobs are done (like ``rhizome worker --burst``). Without it the worker runs
until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pgqueuer
from pgqueuer.types import QueueExecutionMode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drain", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    mode = QueueExecutionMode.drain if args.drain else QueueExecutionMode.continuous
    asyncio.run(pgqueuer.run("pgq_app:create", mode=mode))


if __name__ == "__main__":
    main()
