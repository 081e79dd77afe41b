"""Structured logs: every record carries job_id, job_type, stage and worker_id fields
when known; ``text`` (logfmt-like) or ``json`` lines on stderr."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FIELDS = ("job_id", "job_type", "stage", "worker_id")


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields = {f: getattr(record, f) for f in FIELDS if getattr(record, f, None)}
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        if self.json:
            doc = {
                "at": at,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                doc["exception"] = self.formatException(record.exc_info)
            return json.dumps(doc)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{at} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger("rhizome")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
