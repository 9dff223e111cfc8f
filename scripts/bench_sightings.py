"""What a camera's face costs the gateway: Identify and CreateFace with a Sighting against the same calls without,
and Identify with a Sighting while idle WatchEvents subscribers (which never read) are connected, in one run.

Usage: python scripts/bench_sightings.py [--rounds 40] [--subscribers 50] [--faces DIR]

Starts SecantusDB, a scrfd-mbf extractor, two shards on Tarantool, the gateway (person_identify on) and its HTTP
gateway on free ports, enrolls the labelled photos, creates a camera, then per round times the plain call and the
sighting call with the same photo, alternating which goes first. A sighting adds the face's thumbnail (made by the
extractor), one history insert and the publication; CreateFace with a Sighting also searches for the face's person
before enrolling it. Then blocks of Identify-with-Sighting calls alternate between no subscribers and
`--subscribers` connected ones that never read: publishing must not wait for them (target: ratio <= 1.1).
Prints medians and the median of the per-round ratios, and first what publishing one event to stuck subscribers
costs in process (EventHub.publish with every queue full).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import launch  # noqa: E402
from findface_grpc.gateway.events import EventHub  # noqa: E402
from findface_grpc.gateway.history import Event  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, video_pb2, video_pb2_grpc  # noqa: E402
from tests.gateway.harness import address, make_token, mongo_server, start_healthy  # noqa: E402
from tests.helpers import faces_dir, labelled_photos, with_token  # noqa: E402
from tests.http.harness import HttpCluster  # noqa: E402

BLOCK = 10


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def pairs(rounds: int, photos: list[bytes], plain, sighted) -> tuple[list[float], list[float]]:
    a, b = [], []
    for i in range(rounds):
        photo = photos[i % len(photos)]
        if i % 2:
            b.append(timed(lambda: sighted(photo)))
            a.append(timed(lambda: plain(photo)))
        else:
            a.append(timed(lambda: plain(photo)))
            b.append(timed(lambda: sighted(photo)))
    return a, b


def report(name: str, a: list[float], b: list[float], labels: tuple[str, str]) -> None:
    ratios = [y / x for x, y in zip(a, b)]
    print(f"{name}: {labels[0]} {statistics.median(a) * 1000:.1f} ms, {labels[1]} {statistics.median(b) * 1000:.1f} ms,"
          f" median per-round ratio {statistics.median(ratios):.2f}")


def hub_publish_us(subscribers: int, events: int = 2000) -> float:
    """Microseconds one event takes to publish, in process, to `subscribers` whose queues are full (never read)."""
    hub = EventHub(queue_size=256)
    for _ in range(subscribers):
        hub.subscribe()
    now = datetime.now(timezone.utc)
    batch = [Event(i, "cam", now, "", (0.0, 0.0, 1.0, 1.0), b"", None, "", 0, ("default",), now)
             for i in range(events)]
    hub.publish(batch[:300])  # fill every queue first: what follows drops, as with a stuck subscriber
    start = time.perf_counter()
    hub.publish(batch[300:])
    return (time.perf_counter() - start) / (events - 300) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for n in (1, args.subscribers, 1000):
        print(f"EventHub.publish to {n} stuck subscribers: {hub_publish_us(n):.1f} us per event")
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = [(folder / name).read_bytes() for name, _ in labelled_photos(folder)]

    with tempfile.TemporaryDirectory(prefix="bench-sightings-") as work, mongo_server(Path(work) / "mongo") as mongo:
        extractor_addr = address(launch.free_port())
        extractor = launch.python_server("extractor", "findface_grpc.extractor.server",
                                         ["--listen", extractor_addr, "--model-pack", "scrfd-mbf"],
                                         Path(work) / "extractor.log")
        start_healthy([(extractor, extractor_addr)])
        cluster = HttpCluster(Path(work), "bench", mongo, extractor_addr,
                              gateway_settings={"person_identify": "true"}).start()
        channel = with_token(grpc.insecure_channel(cluster.gateway_address, options=CHANNEL_OPTIONS),
                             make_token(mongo, cluster.mongo_db, "bench"))
        try:
            faces = gateway_pb2_grpc.FaceServiceStub(channel)
            video = video_pb2_grpc.VideoServiceStub(channel)
            for data in photos:
                faces.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data)))
            camera = video.CreateCamera(video_pb2.CreateCameraRequest(meta="bench")).id
            print(f"cluster up, {len(photos)} faces enrolled, camera {camera}")

            def identify(photo: bytes, seen: bool = False) -> None:
                faces.Identify(gateway_pb2.IdentifyRequest(
                    image=common_pb2.ImageSource(content=photo),
                    sighting=gateway_pb2.Sighting(camera_id=camera) if seen else None), timeout=60)

            def enroll(photo: bytes, seen: bool = False) -> None:
                faces.CreateFace(gateway_pb2.CreateFaceRequest(
                    image=common_pb2.ImageSource(content=photo),
                    sighting=gateway_pb2.Sighting(camera_id=camera) if seen else None), timeout=60)

            pairs(6, photos, identify, lambda p: identify(p, True))  # warm-up
            report("Identify", *pairs(args.rounds, photos, identify, lambda p: identify(p, True)),
                   ("plain", "with sighting"))
            report("CreateFace", *pairs(args.rounds, photos, enroll, lambda p: enroll(p, True)),
                   ("plain", "with sighting + person"))

            quiet, crowded = [], []
            for block in range(max(2, args.rounds // BLOCK)):
                idle = [video.WatchEvents(video_pb2.WatchEventsRequest(), timeout=600)
                        for _ in range(args.subscribers)] if block % 2 else []
                time.sleep(0.5)
                for i in range(BLOCK):
                    (crowded if idle else quiet).append(timed(lambda: identify(photos[i], True)))
                for call in idle:
                    call.cancel()
            print(f"Identify with sighting: no subscribers {statistics.median(quiet) * 1000:.1f} ms, "
                  f"{args.subscribers} idle subscribers {statistics.median(crowded) * 1000:.1f} ms, "
                  f"ratio {statistics.median(crowded) / statistics.median(quiet):.2f} (target <= 1.1)")
        finally:
            channel.close()
            cluster.stop()
            extractor.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
