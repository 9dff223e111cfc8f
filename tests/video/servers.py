"""Real servers for the video tests: an HTTP server that streams MJPEG as an IP camera does (multipart JPEG
frames in real time) and serves files (HLS playlists and segments); and an RTSP server (Debian's
rtsp-server-perl) fed by Debian's ffmpeg publishing a video in real time."""
from __future__ import annotations

import functools
import io
import shutil
import socket
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findface_grpc import launch

BOUNDARY = "frame"


class _Handler(SimpleHTTPRequestHandler):
    frames: list[bytes] = []
    fps: float = 15.0

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/camera.mjpg":
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.end_headers()
        start = time.monotonic()
        try:
            for index, jpeg in enumerate(self.frames):
                wait = start + index / self.fps - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                 .encode() + jpeg + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


class HttpCamera:
    """http://<address>/camera.mjpg: the frames once, in real time; any other path: files of `folder`."""

    def __init__(self, frames: list[np.ndarray], fps: float, folder: Path) -> None:
        jpegs = []
        for frame in frames:
            out = io.BytesIO()
            Image.fromarray(frame).save(out, "JPEG", quality=90)
            jpegs.append(out.getvalue())
        handler = type("Handler", (_Handler,), {"frames": jpegs, "fps": fps})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def require_rtsp() -> None:
    for tool in ("ffmpeg", "rtsp-server-perl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh --tests installs it)")


class RtspServer:
    """rtsp-server-perl: publishers ANNOUNCE to the source port, clients PLAY from the client port."""

    def __init__(self, log_dir: Path) -> None:
        base = launch.free_ports(2)
        self.client_port, self.source_port = base, base + 1
        self.rtp_port = launch.free_ports(64)
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.publisher: subprocess.Popen | None = None
        self.up()

    def up(self) -> None:
        self.proc = subprocess.Popen(
            ["rtsp-server-perl", "--clientport", str(self.client_port), "--serverport", str(self.source_port),
             "--rtp_start_port", str(self.rtp_port), "--loglevel", "2"],
            stdout=open(self.log_dir / "rtsp-server.log", "ab"), stderr=subprocess.STDOUT)
        launch.wait_tcp("127.0.0.1", self.source_port, 15)
        launch.wait_tcp("127.0.0.1", self.client_port, 15)

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/{mount}"

    def publish(self, video: Path, mount: str, attempts: int = 3) -> None:
        """ffmpeg sends `video` in real time (-re) to the server, over UDP as the server takes it; returns once the
        server describes the mount to players. A publisher that has not got its stream served within a few
        seconds (its ANNOUNCE lost to a server just started) is started again."""
        for _ in range(attempts):
            self.publisher = subprocess.Popen(
                ["ffmpeg", "-nostdin", "-loglevel", "warning", "-re", "-i", str(video), "-c", "copy", "-f", "rtsp",
                 "-rtsp_transport", "udp", f"rtsp://127.0.0.1:{self.source_port}/{mount}"],
                stdout=open(self.log_dir / "publisher.log", "ab"), stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.publisher.poll() is None:
                if self._describes(mount):
                    return
                time.sleep(0.05)
            self.publisher.kill()
            self.publisher.wait()
        raise RuntimeError(f"the RTSP server did not serve {mount} after {attempts} publishers")

    def _describes(self, mount: str) -> bool:
        request = f"DESCRIBE {self.url(mount)} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode()
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=1) as conn:
                conn.sendall(request)
                return conn.recv(64).startswith(b"RTSP/1.0 200")
        except OSError:
            return False

    def down(self) -> None:
        """The camera goes away mid-stream (publisher and server), as a camera that reboots does. (A publisher
        that leaves alone is no test: this server then serves the mount's next publisher badly.)"""
        for proc in (self.publisher, self.proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.publisher = self.proc = None

    def close(self) -> None:
        self.down()
