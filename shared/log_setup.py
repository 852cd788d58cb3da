"""Logging set-up for kube's processes: text for people, JSON lines for log collectors.

Libraries only call `logging.getLogger(__name__)`; the CLI calls `configure` once. Both
formats render `extra` fields (`log.info(..., extra={"task": task_id})`). The JSON
format also lifts the subject of kube's house style, a message that starts with
`task <id>:`, `node <name>:` or `worker <name>:`, into a `task` or `node` field, so a
collector can select every line about one task.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SUBJECT = re.compile(r"^(task|node|worker) ([A-Za-z0-9][A-Za-z0-9_.-]*):")
_FIELD_OF = {"task": "task", "node": "node", "worker": "node"}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call passed with `extra=`, in the order given."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, one line per record."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={value}" for key, value in extras(record).items())
        if not fields:
            return line
        head, sep, trace = line.partition("\n")  # fields stay on the message's line
        return f"{head} {fields}{sep}{trace}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, subject and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        subject = _SUBJECT.match(message)
        if subject is not None:
            entry[_FIELD_OF[subject.group(1)]] = subject.group(2)
        entry.update(extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PikaWithoutTraceback(logging.Filter):
    """pika logs the errors it raises with their traceback (a refused login: a traceback
    a try); kube's bus translates each and logs it in one line (shared/bus), so pika's
    own record is kept without it, except at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "pika" or record.name.startswith("pika."):
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: str = "INFO", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send every logger's records at `level` and above to stream (stderr) in fmt."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if level.upper() != "DEBUG":
        handler.addFilter(PikaWithoutTraceback())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("pika").setLevel(logging.WARNING)  # pika narrates every frame at INFO
