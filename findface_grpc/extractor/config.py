"""Extractor configuration: `[extractor]` in the config file, or FINDFACE_EXTRACTOR_* variables."""
from __future__ import annotations

import os
from dataclasses import dataclass

from findface_grpc.errors import ConfigError
from findface_grpc.extractor.imaging import MAX_PIXELS_CEILING
from findface_grpc.extractor.models.attribute_packs import ATTRIBUTES

PACK_CUSTOM = "custom"


@dataclass(frozen=True)
class ExtractorConfig:
    listen: str = "127.0.0.1:50052"
    # "scrfd-mbf", "yunet-sface", or "custom" with the custom_* files below.
    model_pack: str = "scrfd-mbf"
    # Where model packs are fetched to; empty: $FINDFACE_MODELS_DIR, else <repo>/models.
    models_dir: str = ""
    # A user's own ArcFace-style models: a detector that gives 5 landmarks and a 112x112 embedder.
    custom_detector: str = ""
    custom_detector_kind: str = "scrfd"  # "scrfd" or "yunet": how to decode its outputs
    custom_embedder: str = ""
    custom_embedder_id: str = ""  # the model id stamped on its descriptors; defaults to the file's stem
    custom_embedder_mean: float = 127.5
    custom_embedder_std: float = 127.5
    # onnxruntime execution providers in order of preference; "auto" picks CUDA when it is available.
    providers: tuple[str, ...] = ("auto",)
    # Threads inside one model call. On small CPUs one thread per call, with calls in parallel, is fastest.
    intra_op_threads: int = 1
    # Threads running decode+detect+align in parallel; 0: one per CPU core.
    workers: int = 0
    max_batch: int = 32  # most crops embedded in one model call (and faces per attribute model call)
    embed_workers: int = 1  # model calls for embedding that may run at once
    # Minimum detector score; 0: the detector's own default (0.5 for SCRFD, 0.6 for YuNet, as their authors use).
    detector_score_threshold: float = 0.0
    # Smallest face (px, box width and height) that is embedded for enrollment, identification and verification;
    # smaller faces are reported with the reason, not used. Chosen on the hard evaluation set (docs/accuracy.md):
    # rank-1 stays >= 0.95 from 16 px for both packs, and every genuine pair passes the medium threshold from
    # 20 px (yunet-sface misses 2 of 17 at 16-19 px).
    min_face_size: int = 20
    # Smallest face Detect reports, px. Faces below min_face_size are still worth showing (a person sees them).
    detect_min_face_size: int = 20
    # Off: one detector pass over the upright photo, no large-face, fine (small faces) or turned passes.
    extra_detection_passes: bool = True
    max_image_mb: float = 10.0
    max_image_megapixels: float = 50.0
    thumbnail_size: int = 160
    # Attribute models to load ("gender", "age", "emotions"); each is run only for the requests that ask for it.
    # A listed model that is missing or altered stops the start (fetch: findface-fetch-models attributes); one
    # not listed is refused to requests with FAILED_PRECONDITION.
    attributes: tuple[str, ...] = ATTRIBUTES
    # The license server (host:port) that must lease this extractor a slot; empty: no licensing.
    license_server: str = ""
    # Prometheus metrics at http://<metrics_listen>/metrics ("host:port"; empty: none). The endpoint takes no
    # token: keep it on a private network.
    metrics_listen: str = ""
    # "text" (the default, for people) or "json" (one object a line: time, level, server, request id, message).
    log_format: str = "text"
    # OpenTelemetry: spans of every call served, to this OTLP/gRPC collector ("host:port"; empty: no tracing).
    # Needs the tracing extra: pip install -e .[tracing].
    otlp_endpoint: str = ""
    log_level: str = "INFO"

    def validate(self) -> None:
        if self.model_pack == PACK_CUSTOM and not (self.custom_detector and self.custom_embedder):
            raise ConfigError("model_pack 'custom' needs custom_detector and custom_embedder")
        if self.custom_detector_kind not in ("scrfd", "yunet"):
            raise ConfigError(f"custom_detector_kind must be 'scrfd' or 'yunet', not {self.custom_detector_kind!r}")
        for name in ("max_batch", "embed_workers", "intra_op_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[extractor].{name} must be >= 1")
        if self.workers < 0 or self.min_face_size < 1 or self.detect_min_face_size < 1:
            raise ConfigError("[extractor].workers must be >= 0, min_face_size and detect_min_face_size >= 1")
        if self.max_image_mb <= 0 or self.max_image_megapixels <= 0:
            raise ConfigError("[extractor] image limits must be > 0")
        if self.max_image_megapixels * 1e6 > MAX_PIXELS_CEILING:
            raise ConfigError(f"[extractor].max_image_megapixels must be at most {MAX_PIXELS_CEILING / 1e6:.0f}: "
                              "the image library refuses bigger images as decompression bombs")
        unknown = [a for a in self.attributes if a not in ATTRIBUTES]
        if unknown:
            raise ConfigError(f"[extractor].attributes: unknown {unknown}; known: {list(ATTRIBUTES)}")
        if not 0 <= self.detector_score_threshold < 1:
            raise ConfigError("[extractor].detector_score_threshold must be in [0, 1)")

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1
