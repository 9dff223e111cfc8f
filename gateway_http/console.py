"""The operator console: the committed files of gateway_http/ui/, served at `/` and `/ui/<name>`.

No build step: the page is plain ES modules over the HTTP API (the same /v1 methods any client uses, with the
operator's API token). Only files that exist in that folder, by exact name, are served, so no path can reach
anything else. The page itself needs no token; every API call it makes does.
"""
from __future__ import annotations

from pathlib import Path

UI_DIR = Path(__file__).with_name("ui")

TYPES = {
    ".html": "text/html; charset=UTF-8",
    ".js": "text/javascript; charset=UTF-8",
    ".css": "text/css; charset=UTF-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

# Scripts and styles only from this origin; photos may come from the photo store (another port or host) and from
# the files the operator picks (blob:). The page cannot be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Files change with the release; ask every time (they are small, and a stale app.js would call old methods).
    "Cache-Control": "no-cache",
}


def lookup(parts: list[str]) -> tuple[bytes, str] | None:
    """(content, content type) of the console file a request path names, or None when it names none."""
    if not parts or parts == ["index.html"]:
        name = "index.html"
    elif len(parts) == 2 and parts[0] == "ui":
        name = parts[1]
    else:
        return None
    kind = TYPES.get(Path(name).suffix)
    if kind is None or name not in _names():
        return None
    return (UI_DIR / name).read_bytes(), kind


def _names() -> set[str]:
    return {p.name for p in UI_DIR.iterdir() if p.is_file() and not p.name.startswith(".")}
