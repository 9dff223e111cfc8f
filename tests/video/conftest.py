"""Fixtures of the video tests: a real extractor, the people of the test videos (from the labelled photos) and
the videos themselves, made once per session."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from findface_grpc.extractor.models import packs
from findface_grpc.video.clients import ExtractorDetector
from findface_grpc.video.config import VideoConfig
from findface_grpc.video.domain import Camera
from findface_grpc.video.posting import Post
from findface_grpc.video.server import unique_posts
from findface_grpc.video.service import VideoDetector
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc
from tests.helpers import free_port, labelled_photos, start_server
from tests.video import scenes

PACK = "scrfd-mbf"
# Who walks through the videos: the first photo of each is the one filmed, the others are the references.
PEOPLE = ("person01", "person02", "person03")


@dataclass(frozen=True)
class Person:
    identity: str
    sprite: object  # PIL image: the filmed photo's face and surroundings
    references: np.ndarray  # descriptors of the person's other photos, one a row


@pytest.fixture(scope="package")
def extractor(tmp_path_factory):
    try:
        packs.verify_pack(PACK, packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"model pack {PACK} not fetched ({exc}); run: findface-fetch-models all")
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("video-extractor") / "extractor.log"
    server = start_server("findface_grpc.extractor.server", ["--listen", address, "--model-pack", PACK], address, log)
    yield server
    server.stop()


def extract(address: str, photo: bytes, boxes=()) -> list[common_pb2.DetectedFace]:
    with grpc.insecure_channel(address) as channel:
        reply = extractor_pb2_grpc.ExtractorStub(channel).Extract(
            extractor_pb2.ExtractRequest(image=photo, boxes=list(boxes)), timeout=30)
    return list(reply.faces)


def descriptor(face: common_pb2.DetectedFace) -> np.ndarray:
    return np.frombuffer(face.descriptor.vector, dtype="<f4")


@pytest.fixture(scope="package")
def people(faces, extractor) -> dict[str, Person]:
    by_identity: dict[str, list[str]] = {}
    for file, identity in labelled_photos(faces):
        by_identity.setdefault(identity, []).append(file)
    found = {}
    for identity in PEOPLE:
        filmed, *others = by_identity[identity]
        photo = (faces / filmed).read_bytes()
        face = extract(extractor.address, photo)[0]
        box = (face.bbox.x1, face.bbox.y1, face.bbox.x2, face.bbox.y2)
        references = np.stack([descriptor(extract(extractor.address, (faces / f).read_bytes())[0]) for f in others])
        found[identity] = Person(identity, scenes.sprite(photo, box), references)
    return found


def identify(address: str, post: Post, people: dict[str, Person]) -> tuple[str, float]:
    """Whose face the posted crop holds: the person whose reference photos it is most like, and how much."""
    box = post.snapshot.photo_box
    face = extract(address, post.snapshot.photo, [common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2],
                                                                          y2=box[3])])[0]
    scores = {p.identity: float((p.references @ descriptor(face)).max()) for p in people.values()}
    best = max(scores, key=scores.get)
    return best, scores[best]


def street(people: dict[str, Person]) -> list[scenes.Walk]:
    """11 s at 15 fps: 1 s empty; person01 crosses left to right (entering and leaving the frame); 1.5 s empty;
    person02 (top, left to right) and person03 (bottom, right to left) cross at once; then empty again."""
    s = {k: p.sprite for k, p in people.items()}
    return [
        scenes.Walk("person01", s["person01"], 15, 59, (-120, 120), (560, 130), 100, 110),
        scenes.Walk("person02", s["person02"], 83, 142, (-60, 10), (520, 10), 90, 90),
        scenes.Walk("person03", s["person03"], 83, 142, (520, 270), (-60, 270), 90, 90),
    ]


STREET_FRAMES = 165


@pytest.fixture(scope="package")
def street_frames(people) -> list[np.ndarray]:
    return scenes.render(street(people), STREET_FRAMES)


@pytest.fixture(scope="package")
def videos(street_frames, people, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    frames = street_frames
    approach = scenes.render(
        [scenes.Walk("person01", people["person01"].sprite, 0, 44, (300, 200), (220, 100), 24, 120)], 60)
    return {
        "street.mp4": scenes.encode(frames, folder / "street.mp4"),
        "street.mkv": scenes.encode(frames, folder / "street.mkv", "mjpeg"),
        "hls": scenes.encode(frames, folder / "hls" / "street.m3u8", "hls"),
        "approach.mp4": scenes.encode(approach, folder / "approach.mp4"),
    }


def video_config(**changes) -> VideoConfig:
    return replace(VideoConfig(reconnect_min_s=0.2, reconnect_max_s=1.0, read_timeout_s=3.0), **changes)


async def run_cameras(address: str, cameras: list[Camera], cfg: VideoConfig, until=None, timeout: float = 90,
                      sink: list | None = None, detect_delay_s: float = 0.0) -> tuple[list[Post], VideoDetector]:
    """Run the detector on `cameras` with a real extractor, posts collected in `sink`, until every camera's
    recording has ended (or the coroutine `until(detector)` returns); returns the posts in order and the stopped
    detector. `detect_delay_s` makes each detection that much slower, as on a loaded machine."""
    client = ExtractorDetector(address, 30, cfg.min_face_size)
    posts: list[Post] = [] if sink is None else sink

    async def detect(frame):
        await asyncio.sleep(detect_delay_s)
        return await client.detect(frame)

    async def send(post: Post) -> None:
        posts.append(post)

    async def listed() -> list[Camera]:
        return cameras

    detector = VideoDetector(cfg, detect, send, listed, unique=unique_posts(cfg, client))
    await detector.start(reload_every=False)
    try:
        if until is None:
            await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in detector.runners.values())), timeout)
        else:
            await asyncio.wait_for(until(detector), timeout)
    finally:
        await detector.stop()
        await client.close()
    return posts, detector
