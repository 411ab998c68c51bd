"""Structured logs: one JSON object per line (or plain text), never a secret.

Browsers pass their JWT as ``?token=`` (the documented way for WebSockets), and uvicorn logs
request paths with their query strings; :class:`RedactTokens` masks those values in every
record that reaches the handler, whichever logger wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Final

_RESERVED: Final = frozenset(vars(logging.makeLogRecord({})))
_TOKEN_RE: Final = re.compile(r"(?i)([?&]token=)[^&\s\"']*")


def redact_tokens(text: str) -> str:
    """``token=`` query values replaced by ``***``."""
    return _TOKEN_RE.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """Masks ``?token=`` values in a record's message and string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace ``token=...`` values in the message, its arguments and string extras, so a URL
        with a token never reaches a log; always keeps the record."""
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact_tokens(record.msg)
        for key, value in vars(record).items():  # extras, e.g. uvicorn's color_message
            if key not in _RESERVED and isinstance(value, str) and "token=" in value.lower():
                setattr(record, key, redact_tokens(value))
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(a) if isinstance(a, str) and "token=" in a.lower() else a
                for a in record.args
            )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (time, level, logger, message and the record's extras) for log
    collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line (extras included, exceptions as text)."""
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | str | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, level: str) -> None:
    """Route the root and uvicorn loggers through one handler, JSON or text, tokens redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
