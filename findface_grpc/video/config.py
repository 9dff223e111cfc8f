"""Video detector configuration: `[video]` in the config file, or FINDFACE_VIDEO_* variables.

Names follow the original fkvideo_detector's options where they mean the same thing (detector-name,
detectors-max, reload-timeout, single-pass, disable-drops, realtime, md-threshold, rt-score-step, rt-delay,
rt-refresh, post-uniq, uc-max-time-diff, uc-max-dup, uc-max-avg-shift, min-face-size, max-persons, bbox-scale,
req-timeout); its min-dir-score is `max_pose_error`, on the extractor's pose scale;
its --camid/--source pair is `camera_id` and `source` here, its --license-ntls-server `license_server`.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from findface_grpc.config import is_address
from findface_grpc.errors import ConfigError
from findface_grpc.gateway.limits import MAX_META_CHARS
from findface_grpc.video.domain import Region, parse_geometry

REQUEST_IDENTIFY = "identify"
REQUEST_CREATE = "create"
SIMILARITY_PRESETS = ("strict", "medium", "low")


@dataclass(frozen=True)
class VideoConfig:
    # gRPC health checking only: the launcher and systemd watch it; the detector serves no API of its own.
    listen: str = "127.0.0.1:50090"
    gateway: str = "127.0.0.1:50051"
    extractor: str = "127.0.0.1:50052"
    # The API token the detector calls the gateway with (FINDFACE_VIDEO_TOKEN: keep it out of config files).
    token: str = ""
    # The license server (host:port) the detector holds a lease from, for the cameras it runs; empty: none (an
    # unlicensed cluster). Cameras past the license's camera limit are not run, and say so in their status.
    license_server: str = ""
    # The cameras it runs are those the gateway lists with this detector name; empty: the host name.
    detector_name: str = ""
    # Or one camera given here (both set): the camera must still exist in the gateway, whose Identify checks it.
    # Its regions of tracking and of interest as the original's WxH+X+Y, e.g. "640x360+0+0"; empty: the frame.
    camera_id: str = ""
    source: str = ""
    rot: str = ""
    roi: str = ""
    detectors_max: int = 5  # most cameras run at once; more are left out, with a warning
    reload_timeout_s: float = 15.0
    # Ask the gateway for the camera list once, at start (the original's single-pass: for recordings).
    single_pass: bool = False
    # FFmpeg options for every stream, "key=value" each, e.g. rtsp_transport=tcp.
    source_params: tuple[str, ...] = ()
    # Network streams: a read that hangs this long fails the stream, which is then reopened.
    read_timeout_s: float = 10.0
    # A stream that fails is reopened after this, doubling while it keeps failing, up to the maximum.
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    detect_fps: float = 5.0  # frames a second sent to detection, per camera
    # The original's disable-drops: a live stream's sampled frames wait for detection, up to waiting_frames of
    # them (a bound on memory: each holds its decoded region of tracking), instead of only the newest one; so a
    # burst of faces is detected late rather than partly skipped. Past the bound the oldest is dropped, counted.
    disable_drops: bool = False
    waiting_frames: int = 25
    # Share of the frame's pixels (after scaling by md_scale) that must change for detection to run while no face
    # is tracked; 0 turns the motion gate off (every sampled frame is detected).
    md_threshold: float = 0.002
    md_scale: float = 0.3
    # Concurrent Detect calls for all cameras together; about the extractor's worker count keeps it busy.
    detect_in_flight: int = 4
    jpeg_quality: int = 90
    # Real-time mode: post a face when its quality reaches the threshold, which then rises by rt_score_step;
    # reset when the face leaves. Off (offline): one post per track, its best snapshot, when the track ends.
    realtime: bool = False
    min_quality: float = 0.3  # the original's min-score, on the extractor's quality scale [0, 1]
    rt_score_step: float = 0.05
    rt_delay_s: float = 0.2  # least time between two real-time posts of one track
    # Real-time mode: a track's threshold falls back to min_quality this long after its last post, so a face that
    # stays in view is posted again now and then even when no better snapshot comes; 0: never.
    rt_refresh_s: float = 0.0
    # post-uniq: at most uc_max_dup posts of one person per camera within uc_max_time_diff_s. A face whose box
    # centre lies within uc_max_avg_shift px of a recent post's is compared with it (descriptors from the
    # extractor); at or above uc_threshold it is the same person. The threshold is a preset of the extractor's
    # model ("strict", "medium", "low") or a cosine similarity in (0, 1].
    post_uniq: bool = False
    uc_max_time_diff_s: float = 30.0
    uc_max_dup: int = 3
    uc_max_avg_shift: float = 10.0
    uc_threshold: str = "medium"
    min_face_size: int = 40  # px, the box's shorter side
    max_face_size: int = 0  # px, the box's longer side; 0 = no limit
    # The original's min-dir-score on the extractor's pose scale: faces turned further than this from frontal are
    # not posted. The landmarks' distance from a frontal face's, in eye distances (extractor/quality.py): frontal
    # faces about 0.05, three-quarter views 0.15, profiles beyond 0.3. 0 = no limit.
    max_pose_error: float = 0.0
    max_persons: int = 8  # faces tracked at once per camera; the smallest extra faces are ignored
    # A track ends when its face has not been seen for this long (frame time): longer than detection may fall
    # behind, or a loaded detector splits one walk into several tracks.
    track_timeout_s: float = 2.0
    # The posted crop is the face box scaled by this about its centre (the gateway detects the face again in it).
    bbox_scale: float = 2.0
    # What a posted face does: "identify" against `identify_gallery`, or "create" (enroll) into `galleries`.
    request: str = REQUEST_IDENTIFY
    identify_gallery: str = "default"
    galleries: tuple[str, ...] = ()
    # The meta of the faces it enrolls ("create"), as the original's --body meta=...
    meta: str = ""
    req_timeout_s: float = 3.0
    # Posts waiting while the gateway is down; past this the oldest are dropped (and counted).
    post_queue: int = 256
    # Prometheus metrics at http://<metrics_listen>/metrics ("host:port"; empty: none). The endpoint takes no
    # token: keep it on a private network.
    metrics_listen: str = ""
    log_format: str = "text"  # or "json"
    # OpenTelemetry: spans of every call served, to this OTLP/gRPC collector ("host:port"; empty: no tracing).
    otlp_endpoint: str = ""
    log_level: str = "INFO"

    def validate(self) -> None:
        for name in ("listen", "gateway", "extractor"):
            if not is_address(getattr(self, name), any_port=name == "listen"):
                raise ConfigError(f"[video].{name} must be host:port, not {getattr(self, name)!r}")
        if self.license_server and not is_address(self.license_server):
            raise ConfigError(f"[video].license_server must be host:port or empty, not {self.license_server!r}")
        if bool(self.camera_id) != bool(self.source):
            raise ConfigError("[video].camera_id and source are set together (or neither)")
        for name in ("rot", "roi"):
            if getattr(self, name) and not self.camera_id:
                raise ConfigError(f"[video].{name} is for the one camera of camera_id and source; the gateway's "
                                  f"cameras carry their own")
            try:
                self.region(name)
            except ValueError as exc:
                raise ConfigError(f"[video].{name}: {exc}") from None
        if len(self.meta) > MAX_META_CHARS:
            raise ConfigError(f"[video].meta must be at most {MAX_META_CHARS} characters (the gateway's limit)")
        if self.request not in (REQUEST_IDENTIFY, REQUEST_CREATE):
            raise ConfigError(f"[video].request must be {REQUEST_IDENTIFY!r} or {REQUEST_CREATE!r}, "
                              f"not {self.request!r}")
        if not 0 < self.detect_fps <= 60:
            raise ConfigError("[video].detect_fps must be in (0, 60]")
        if not 0 <= self.md_threshold < 1 or not 0 < self.md_scale <= 1:
            raise ConfigError("[video].md_threshold must be in [0, 1), md_scale in (0, 1]")
        if not 0 <= self.min_quality <= 1 or self.rt_score_step < 0 or self.rt_delay_s < 0:
            raise ConfigError("[video].min_quality must be in [0, 1], rt_score_step and rt_delay_s >= 0")
        if self.max_pose_error < 0:
            raise ConfigError("[video].max_pose_error must be >= 0 (0: no limit)")
        if self.rt_refresh_s < 0 or self.uc_max_time_diff_s <= 0 or self.uc_max_avg_shift < 0:
            raise ConfigError("[video].rt_refresh_s and uc_max_avg_shift must be >= 0, uc_max_time_diff_s > 0")
        try:
            self.similarity_threshold(None)
        except ValueError as exc:
            raise ConfigError(f"[video].uc_threshold: {exc}") from None
        for name in ("detectors_max", "detect_in_flight", "max_persons", "post_queue", "min_face_size", "uc_max_dup",
                     "waiting_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[video].{name} must be >= 1")
        if self.max_face_size and self.max_face_size < self.min_face_size:
            raise ConfigError("[video].max_face_size must be 0 or >= min_face_size")
        if not 1 <= self.jpeg_quality <= 100 or self.bbox_scale < 1:
            raise ConfigError("[video].jpeg_quality must be in 1..100, bbox_scale >= 1")
        for name in ("reload_timeout_s", "read_timeout_s", "reconnect_min_s", "track_timeout_s", "req_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[video].{name} must be > 0")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError("[video].reconnect_max_s must be >= reconnect_min_s")
        for param in self.source_params:
            if "=" not in param:
                raise ConfigError(f"[video].source_params: {param!r} is not key=value")

    def similarity_threshold(self, presets: dict[str, float] | None) -> float:
        """uc_threshold as a cosine similarity: a number as given, a preset from `presets` (the extractor model's,
        name -> value); with None only checked."""
        text = self.uc_threshold.strip().lower()
        if text in SIMILARITY_PRESETS:
            return presets[text] if presets is not None else 0.0
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{self.uc_threshold!r} is neither {', '.join(SIMILARITY_PRESETS)} nor a number") from None
        if not 0 < value <= 1:
            raise ValueError(f"{value} is not a cosine similarity in (0, 1]")
        return value

    def region(self, name: str) -> Region | None:
        """The configured camera's `rot` or `roi`."""
        text = getattr(self, name)
        return parse_geometry(text) if text else None

    @property
    def name(self) -> str:
        return self.detector_name or socket.gethostname()

    @property
    def ffmpeg_options(self) -> dict[str, str]:
        return dict(p.split("=", 1) for p in self.source_params)
