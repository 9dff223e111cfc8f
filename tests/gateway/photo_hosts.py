"""Photo hosts that end their answers in each way HTTP allows, and a real nginx, for the photo fetch's tests."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import socketserver
import threading
import time
from pathlib import Path

from findface_grpc import launch

HOST = "127.0.0.1"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# How a framed host answers: the status line and headers, how the body is framed, and whether it hangs up after.
# "keep-alive" and "chunked" hold the connection open although the fetch asks for close, as servers may.
FRAMINGS = {
    "http10-eof": ("HTTP/1.0 200 OK", "eof", True),
    "http10-length": ("HTTP/1.0 200 OK", "length", True),
    "http11-close": ("HTTP/1.1 200 OK\r\nConnection: close", "length", True),
    "http11-close-chunked": ("HTTP/1.1 200 OK\r\nConnection: close", "chunked", True),
    "chunked": ("HTTP/1.1 200 OK", "chunked", False),
    "keep-alive": ("HTTP/1.1 200 OK\r\nConnection: keep-alive", "length", False),
}


# Hosts that answer a byte at a time, every DRIP_INTERVAL_S: from the first header byte, or from the body's first.
DRIPS = ("drip-headers", "drip-body")
DRIP_INTERVAL_S = 0.05


def framed_answer(framing: str, body: bytes) -> bytes:
    head, frame, _ = FRAMINGS[framing]
    headers = [head, "Content-Type: image/jpeg"]
    if frame == "length":
        headers.append(f"Content-Length: {len(body)}")
    elif frame == "chunked":
        headers.append("Transfer-Encoding: chunked")
        # Uneven chunks, so that chunk ends and the fetch's reads fall in different places.
        pieces = [body[i:i + 70_001] for i in range(0, len(body), 70_001)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


class _FramedHandler(socketserver.StreamRequestHandler):
    server: "FramedHost"

    def handle(self) -> None:
        self.connection.settimeout(10)
        target = self.rfile.readline().split()[1].decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        framing, _, name = target.strip("/").partition("/")
        if framing in DRIPS:
            self._drip(framing, framed_answer("http11-close", self.server.photos[name]))
            return
        self.wfile.write(framed_answer(framing, self.server.photos[name]))
        self.wfile.flush()
        if not FRAMINGS[framing][2]:
            self.rfile.read()  # the client is the one to hang up


    def _drip(self, framing: str, answer: bytes) -> None:
        slow_from = 0 if framing == "drip-headers" else answer.index(b"\r\n\r\n") + 4
        self.wfile.write(answer[:slow_from])
        for i in range(slow_from, len(answer)):
            self.wfile.write(answer[i:i + 1])
            self.wfile.flush()
            time.sleep(DRIP_INTERVAL_S)


class FramedHost(socketserver.ThreadingTCPServer):
    """Answers GET /<framing>/<name> with photos[name], framed as FRAMINGS says, written out byte for byte; or,
    for a framing of DRIPS, a byte at a time."""

    daemon_threads = True

    def __init__(self, photos: dict[str, bytes]) -> None:
        super().__init__((HOST, 0), _FramedHandler)
        self.photos = photos
        self.base = f"http://{HOST}:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        # A fetch that refuses an oversized photo hangs up mid-body; that is the point, not a failure.
        pass

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _QuietFolderHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every fetch
        pass


class FolderHost:
    """`python3 -m http.server`: the standard library's folder server, which answers HTTP/1.0 and hangs up."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietFolderHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer((HOST, 0), handler)
        self.server.daemon_threads = True
        self.base = f"http://{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def nginx_config(base: Path, folder: Path, port: int) -> str:
    # Everything nginx writes goes under base: the packaged defaults (/run, /var/lib/nginx, /var/log/nginx) may
    # be missing or not writable. Its workers switch to an unprivileged user only when started as root, and that
    # user could not read a private temporary folder, so as root they stay root.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {base / kind};" for kind in kinds)
    return f"""{user}daemon off;
worker_processes 1;
pid {base / "nginx.pid"};
error_log {base / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log {base / "access.log"};
{temp}
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    server {{
        listen {HOST}:{port};
        root {folder};
        location = /moved.jpg {{ return 301 /img1.jpg; }}
    }}
}}
"""


class Nginx:
    """A real nginx serving `folder` on a free loopback port, its config, pid, logs and temp files all in `base`."""

    def __init__(self, base: Path, folder: Path) -> None:
        port = launch.free_port(HOST)
        config = base / "nginx.conf"
        config.write_text(nginx_config(base, folder, port))
        self.base = f"http://{HOST}:{port}"
        self.process = launch.ManagedProcess(
            "nginx", [NGINX, "-p", str(base), "-e", str(base / "error.log"), "-c", str(config)], base / "nginx.out")
        self.process.start()
        try:
            launch.wait_tcp(HOST, port, 15, self.process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.stop()
