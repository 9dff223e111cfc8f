"""Serving a WSGI application with waitress until SIGTERM or SIGINT, shared by the HTTP gateway and the photo store.

waitress reads every connection on one I/O thread (poll) and hands a request to a worker thread only once it has
arrived whole, headers and body; a worker writes its answer into a buffer that the I/O thread sends. So a client
that is slow to send or to read, or that connects and sends nothing, costs a file descriptor and what it sent so
far, never a worker thread: `threads` bounds the requests being answered at once, not the clients connected.
Around waitress, this module adds:

- deadlines: a request's headers must arrive within `header_timeout_s` of its first byte, and the whole request,
  body included, within `request_timeout_s`; a slower client is answered 408 and its connection closed (an
  upload cut off this way is reported like one the client broke off). A connection with nothing in progress is
  closed after `idle_timeout_s`: an idle keep-alive, or one that connected and never sent anything.
- a connection cap: beyond `max_connections` open connections, a new one is answered 503 at once and closed,
  rather than left to wait in the listen queue. The process's open-file limit is raised to fit (the soft limit,
  up to the hard one); where the hard limit is too low, the cap is lowered to fit it, with a warning.
- a body limit decided from the headers: a request that announces more than `max_body_bytes` (or whose chunked
  body grows past it) is handed to the application at once, with an empty body and a Content-Length over the
  limit, so that the application answers its own 413 (the HTTP gateway's legacy error JSON, the store's reason)
  without the body being buffered. The connection then closes, after reading and dropping what the client
  still sends for a while (up to LINGER_BYTES within LINGER_S), so that the client reads that answer rather
  than a reset connection.
- `Connection: close` from an application (which waitress refuses from WSGI applications, as a hop-by-hop
  header): the connection is closed after that answer, and the header sent.
- answers the server makes itself (a malformed request, headers over MAX_HEADER_BYTES, 408, 503) take their
  body from the application's `error_body` (the HTTP gateway: the legacy error JSON), else plain text.
- a graceful stop on SIGTERM or SIGINT: stop listening, let the requests in progress finish (up to
  STOP_GRACE_S), close the rest.
"""
from __future__ import annotations

import email.utils
import io
import logging
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import RequestEntityTooLarge

log = logging.getLogger(__name__)

# Request line and headers together, at most (a request with more is answered 431).
MAX_HEADER_BYTES = 64 * 1024
# After a body refused from its headers: how much of it is read and dropped, at most, and for how long.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_S = 10.0
# On SIGTERM or SIGINT, how long requests in progress get to finish.
STOP_GRACE_S = 5.0
# Each connection may hold a socket and a temporary file (a body or answer too big to keep in memory).
FDS_PER_CONNECTION = 2
SPARE_FDS = 256
# The most read from a connection at once.
RECV_BYTES = 64 * 1024
# How often deadlines are checked (s), and the I/O loop's longest wait.
CHECK_INTERVAL_S = 1
REFUSAL_LOG_INTERVAL_S = 10.0
CLOSE_KEY = "findface.close_connection"

STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 413: "Payload Too Large",
               431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
               503: "Service Unavailable"}

# (status, reason) -> (Content-Type, body) of an answer the server makes itself.
ErrorBody = Callable[[int, str], tuple[str, bytes]]
# (method, path, bytes received, bytes announced or None) of a request whose body never arrived whole.
OnIncomplete = Callable[[str, str, int, "int | None"], None]


@dataclass(frozen=True)
class Limits:
    threads: int
    max_connections: int
    idle_timeout_s: float
    header_timeout_s: float
    request_timeout_s: float
    # Bodies over this are refused from the headers: the application answers them with an empty body.
    max_body_bytes: int


def plain_error(status: int, reason: str) -> tuple[str, bytes]:
    return "text/plain; charset=utf-8", f"{status} {STATUS_TEXT.get(status, 'Error')}: {reason}\n".encode()


class _Parser(HTTPRequestParser):
    """Notes when the request began, and reads nothing after a refusal: the connection closes after it."""

    def __init__(self, adj) -> None:
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data):
        consumed = super().received(data)
        if self.error is not None:
            # Refused from its headers: no "100 Continue" asking for a body that is not wanted, and the rest of
            # what arrived is no new request.
            self.expect_continue = False
            return len(data)
        return consumed


class _Task(WSGITask):
    def get_environment(self):
        environ = super().get_environment()
        environ[CLOSE_KEY] = self.set_close_on_finish
        return environ


class _RefusedBodyTask(_Task):
    """A body over the limit, refused from the headers: the application answers without it (its own 413)."""

    def get_environment(self):
        environ = super().get_environment()
        request = self.request
        environ["wsgi.input"] = io.BytesIO()
        environ["CONTENT_LENGTH"] = str(max(request.content_length, request.body_bytes_received))
        return environ

    def execute(self):
        request = self.request
        self.set_close_on_finish()
        left = LINGER_BYTES if request.chunked else request.content_length - request.body_bytes_received
        self.channel.drain_after = max(1, min(left, LINGER_BYTES))
        super().execute()


class _ErrorTask(ErrorTask):
    """waitress's own refusals (malformed requests, oversized headers), with the application's error body."""

    def execute(self):
        error = self.request.error
        content_type, body = self.channel.server.error_body(error.code, str(error.body))
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", content_type))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def _error_task(channel, request):
    if isinstance(request.error, RequestEntityTooLarge):
        return _RefusedBodyTask(channel, request)
    return _ErrorTask(channel, request)


class _Channel(HTTPChannel):
    parser_class = _Parser
    task_class = _Task
    error_task_class = staticmethod(_error_task)
    # Bytes of a refused body to read and drop once its answer is sent, and while doing so, until when.
    drain_after = 0
    linger_until: float | None = None

    def readable(self):
        return True if self.linger_until is not None else super().readable()

    def writable(self):
        return False if self.linger_until is not None else super().writable()

    def handle_read(self):
        if self.linger_until is None:
            return super().handle_read()
        try:
            data = self.socket.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        self.drain_after -= len(data)
        if not data or self.drain_after <= 0:
            self._close_now()

    def handle_close(self):
        if self.drain_after > 0 and self.linger_until is None and self.connected and not self.total_outbufs_len:
            # The answer is sent: send nothing more, and read what the client still sends for a while, as closing
            # with unread data would reset the connection, losing the answer before the client reads it.
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                return self._close_now()
            self.linger_until = time.monotonic() + LINGER_S
            self.will_close = self.close_when_flushed = False
            return None
        return self._close_now()

    def _close_now(self) -> None:
        self.drain_after = 0
        self.linger_until = None
        request, self.request = self.request, None
        if (request is not None and request.headers_finished and not request.completed
                and request.body_rcv is not None and self.server.on_incomplete is not None):
            try:
                self.server.on_incomplete(request.command, request.path, request.body_bytes_received,
                                          None if request.chunked else request.content_length)
            except Exception:  # noqa: BLE001 - a report must not keep the connection open
                log.exception("reporting an incomplete request failed")
        super().handle_close()

    def check_deadlines(self, now: float, limits: Limits) -> None:
        if self.linger_until is not None:
            if now >= self.linger_until:
                self._close_now()
            return
        request = self.request
        if request is None or self.requests or self.will_close or self.close_when_flushed or not self.connected:
            return
        if not request.headers_finished and now - request.started > limits.header_timeout_s:
            self.answer_and_close(408, f"the request's headers did not arrive within {limits.header_timeout_s:g} s")
        elif now - request.started > limits.request_timeout_s:
            self.answer_and_close(408, f"the request did not arrive whole within {limits.request_timeout_s:g} s")

    def answer_and_close(self, status: int, reason: str) -> None:
        """An answer of the server's own, then close (on the I/O thread, with no request being served)."""
        data = self.server.error_response(status, reason)
        with self.outbuf_lock:
            self.outbufs[-1].append(data)
            self.total_outbufs_len += len(data)
        self.close_when_flushed = True


class Server(TcpWSGIServer):
    """waitress's server with the limits above; made by make_server, run by serve_until_signalled."""

    channel_class = _Channel

    def __init__(self, app, sock: socket.socket, adj: Adjustments, limits: Limits, error_body: ErrorBody,
                 on_incomplete: OnIncomplete | None, max_connections: int) -> None:
        self.limits = limits
        self.error_body = error_body
        self.on_incomplete = on_incomplete
        self.max_connections = max_connections
        self.refused = 0
        self._refusal_logged = 0.0
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        super().__init__(_connection_close(app), map={}, _sock=sock, adj=adj, bind_socket=False,
                         sockinfo=sockinfo)

    @property
    def bound(self) -> tuple[str, int]:
        return self.effective_host, int(self.effective_port)

    def error_response(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        content_type, body = self.error_body(status, reason)
        head = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}", f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}", "Connection: close", f"Server: {self.adj.ident}",
                f"Date: {email.utils.formatdate(usegmt=True)}", *(f"{k}: {v}" for k, v in headers)]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    def handle_accept(self):
        if len(self.active_channels) < self.max_connections:
            return super().handle_accept()
        try:
            pair = self.accept()
        except OSError:
            return None
        if pair is not None:
            self._refuse(pair[0])
        return None

    def _refuse(self, conn: socket.socket) -> None:
        """Beyond max_connections: 503 at once, and close."""
        self.refused += 1
        try:
            conn.setblocking(False)
            try:
                conn.recv(65536)  # what already came: closing with it unread would reset the connection
            except OSError:
                pass
            conn.send(self.error_response(503, f"the server has {self.max_connections} connections open, its "
                                          "limit; retry shortly", (("Retry-After", "1"),)))
        except OSError:
            pass
        finally:
            conn.close()
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL_S:
            self._refusal_logged = now
            log.warning("%d connections open (max_connections): new ones are answered 503 (%d so far)",
                        len(self.active_channels), self.refused)

    def maintenance(self, now):
        # Runs on the I/O loop, outside waitress's handling of errors: one must not stop the loop.
        try:
            super().maintenance(now)  # idle connections
            mono = time.monotonic()
            for channel in list(self.active_channels.values()):
                channel.check_deadlines(mono, self.limits)
        except Exception:  # noqa: BLE001
            log.exception("checking the connections' deadlines failed")

    def run_until(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            wasyncore.loop(timeout=CHECK_INTERVAL_S, map=self._map, use_poll=True, count=1)
        self._stop()

    def _stop(self) -> None:
        """Stop listening; let the requests in progress finish, within STOP_GRACE_S; close everything."""
        wasyncore.dispatcher.close(self)  # the listening socket only: the trigger wakes the loop below
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            busy = False
            for channel in list(self.active_channels.values()):
                if channel.requests or channel.total_outbufs_len:
                    busy = True
                elif channel.connected:
                    channel._close_now()  # idle, or a request not yet received whole: never started
            if not busy:
                break
            wasyncore.loop(timeout=0.1, map=self._map, use_poll=True, count=1)
        self.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self._map)


def _connection_close(app):
    """Takes `Connection` out of an application's headers (waitress refuses hop-by-hop headers from WSGI
    applications); `close` closes the connection after the answer, and is sent."""

    def wrapped(environ, start_response):
        def start(status, headers, exc_info=None):
            kept = []
            for name, value in headers:
                if name.lower() != "connection":
                    kept.append((name, value))
                elif value.strip().lower() == "close" and CLOSE_KEY in environ:
                    environ[CLOSE_KEY]()
            return start_response(status, kept, exc_info)

        return app(environ, start)

    return wrapped


def fit_open_files(max_connections: int) -> int:
    """Raise the soft open-file limit to what max_connections needs (up to the hard limit); the number of
    connections that fit."""
    need = max_connections * FDS_PER_CONNECTION + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit to %d: %s", soft, exc)
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < need:
        fit = max(1, (soft - SPARE_FDS) // FDS_PER_CONNECTION)
        log.warning("the open-file limit (%d) fits %d connections, not max_connections = %d: serving at most %d "
                    "(raise the hard limit, e.g. LimitNOFILE in the systemd unit)", soft, fit, max_connections, fit)
        return fit
    return max_connections


def _listen_socket(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or None
    family, kind, proto, _, addr = socket.getaddrinfo(host, int(port), socket.AF_UNSPEC, socket.SOCK_STREAM,
                                                      socket.IPPROTO_TCP, socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def make_server(app, listen: str, name: str, limits: Limits, *, error_body: ErrorBody = plain_error,
                on_incomplete: OnIncomplete | None = None) -> Server:
    """Bind `listen` (host:port; port 0: any free one) and listen; serve with serve_until_signalled."""
    max_connections = fit_open_files(limits.max_connections)
    sock = _listen_socket(listen)
    adj = Adjustments(
        sockets=[sock],
        threads=limits.threads,
        ident=name,
        server_name=name,
        backlog=1024,
        # A backstop only: connections beyond max_connections are answered 503 by Server.handle_accept.
        connection_limit=max_connections + 16,
        channel_timeout=max(1, round(limits.idle_timeout_s)),
        cleanup_interval=CHECK_INTERVAL_S,
        asyncore_loop_timeout=CHECK_INTERVAL_S,
        asyncore_use_poll=True,  # select() fails beyond fd 1023
        # Each turn of the I/O loop looks at every connection: a photo read in fewer, larger pieces (8 KB by
        # default) costs fewer turns when many connections are open.
        recv_bytes=RECV_BYTES,
        max_request_header_size=MAX_HEADER_BYTES,
        # waitress refuses a body from this size on; the application answers those (_RefusedBodyTask).
        max_request_body_size=limits.max_body_bytes + 1,
        # Forwarded headers reach the application as sent, as they always did.
        clear_untrusted_proxy_headers=False,
        expose_tracebacks=False,
    )
    try:
        return Server(app, sock, adj, limits, error_body, on_incomplete, max_connections)
    except BaseException:
        sock.close()
        raise


def serve_until_signalled(server: Server, name: str, listen: str, banner: str,
                          ready: Callable[[], None] | None = None) -> None:
    """Log `banner` (formatted with the bound host and port), call `ready` (the socket listens: connections made
    from now on are served), serve until SIGTERM or SIGINT, then stop gracefully (Server._stop).

    The signal handler only sets a flag and wakes the I/O loop, from a thread of its own (the loop's trigger
    takes a lock the interrupted thread may hold).
    """
    stopping = threading.Event()

    def stop(*_) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("shutting down %s", listen)
            threading.Thread(target=server.pull_trigger, name=f"{name}-stop", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    log.info(banner, *server.bound)
    if ready is not None:
        ready()
    server.run_until(stopping)
