"""Request ids: one id per request, made at its first door and carried along to every server it reaches.

The id lives in a context variable for the duration of the request: the gRPC interceptors and the WSGI
middleware set it, client interceptors send it on as `x-request-id` metadata, log records carry it (logs.py).
asyncio tasks copy their context when created, so work a request starts carries its id; threads do not, which
is why code that hands a request's work to a thread pool passes `contextvars.copy_context()` along.
"""
from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterable

# The gRPC metadata key (trailing metadata on the way back) and the HTTP header.
METADATA_KEY = "x-request-id"
HEADER = "X-Request-Id"
# A caller's own id is kept only when it is short and plain: it is written into every log line and header.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:/+=-]{1,64}")

current: contextvars.ContextVar[str] = contextvars.ContextVar("findface_request_id", default="")


def new() -> str:
    return secrets.token_hex(8)


def accept(value: str | bytes | None) -> str:
    """The caller's id when it is acceptable, else a new one (a bad id never fails a request)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return new()


def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == METADATA_KEY:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return None
