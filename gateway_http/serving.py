"""Running a cheroot WSGI server until SIGTERM or SIGINT, shared by the HTTP gateway and the photo store."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

from cheroot import wsgi

log = logging.getLogger(__name__)


def serve_until_signalled(server: wsgi.Server, name: str, listen: str, banner: str,
                          ready: Callable[[], None] | None = None) -> None:
    """Bind, log `banner` (formatted with the bound host and port), call `ready` (the socket listens: connections
    made from now on are served), serve until signalled, then stop gracefully.

    cheroot's stop() waits for the serving loop, so it runs on its own thread rather than in the signal handler.
    """
    stopping = threading.Event()

    def stop(*_) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("shutting down %s", listen)
            threading.Thread(target=server.stop, name=f"{name}-stop", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    server.prepare()
    log.info(banner, *server.bind_addr[:2])
    if ready is not None:
        ready()
    server.serve()
