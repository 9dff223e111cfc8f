"""Log lines of every server: the human format (the default) or one JSON object a line, both with request ids."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from findface_grpc.errors import ConfigError
from findface_grpc.observability import requestid

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord's own attributes: anything else on a record came from `extra=` and is written as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id",
                                                                         "taskName"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = requestid.current.get()
        return True


class TextFormatter(logging.Formatter):
    """The project's human format, with ` [request <id>]` at the end of lines written about a request."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", "")
        return f"{line} [request {rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """time, level, server, logger, request_id (when there is one), message, the `extra=` fields, and the
    exception's traceback as `exception`."""

    def __init__(self, server: str) -> None:
        super().__init__()
        self.server = server

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "server": self.server,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            line["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def check_format(table: str, log_format: str) -> None:
    if log_format not in FORMATS:
        raise ConfigError(f"[{table}].log_format must be {TEXT!r} or {JSON!r}, not {log_format!r}")


def configure(level: str = "INFO", log_format: str = TEXT, server: str = "") -> None:
    """Set up the root logger (as logging.basicConfig: not when it has handlers already): one stderr handler in
    the chosen format, with request ids."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter(server) if log_format == JSON else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
