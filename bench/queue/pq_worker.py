"""A Procrastinate worker process for the benchmark.

    python pq_worker.py --concurrency 10 [--one-shot]

``--one-shot`` is ``wait=False``: the worker exits once a fetch comes back empty (like
``rhizome worker --burst``). Without it the worker runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pq_app import app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--one-shot", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app.run_worker(
        concurrency=args.concurrency,
        wait=not args.one_shot,
        install_signal_handlers=True,
        shutdown_graceful_timeout=10,
    )


if __name__ == "__main__":
    main()
