"""Video detector server: `findface-video [--config FILE]` or `serve(config)`.

Runs the cameras the gateway lists for this detector's name (or the one camera of its config), posting faces
through the gateway with its token; serves gRPC health checking on `listen` for the launcher and systemd. With a
license server it holds a lease for the cameras it runs, as the extractor and the shards hold theirs: refused at
start it exits, and health says NOT_SERVING while the license refuses it or its server has been unreachable past
the grace period (its cameras are stopped meanwhile).
"""
from __future__ import annotations

import argparse
import logging

from findface_grpc.license import client as license_client
from findface_grpc.observability import gauges
from findface_grpc.rpc import GrpcServer, run_until_signalled, server_main
from findface_grpc.video.clients import ExtractorDetector, GatewayClient
from findface_grpc.video.config import REQUEST_CREATE, VideoConfig
from findface_grpc.video.domain import Camera
from findface_grpc.video.posting import Post, UniquePosts
from findface_grpc.video.service import CameraLicense, VideoDetector

log = logging.getLogger(__name__)


def unique_posts(config: VideoConfig, extractor: ExtractorDetector) -> UniquePosts | None:
    """post-uniq, when configured: descriptors and the threshold's preset from the extractor."""
    if not config.post_uniq:
        return None

    async def describe(post: Post):
        return await extractor.describe(post.snapshot.photo, post.snapshot.photo_box)

    async def threshold() -> float:
        return config.similarity_threshold(await extractor.similarity_presets())

    return UniquePosts(describe, threshold, config.uc_max_time_diff_s, config.uc_max_dup, config.uc_max_avg_shift)


def build(config: VideoConfig, license: CameraLicense | None = None
          ) -> tuple[VideoDetector, ExtractorDetector, GatewayClient]:
    extractor = ExtractorDetector(config.extractor, config.req_timeout_s, config.min_face_size)
    gateway = GatewayClient(config.gateway, config.token, config.req_timeout_s)

    async def list_cameras() -> list[Camera]:
        if config.camera_id:
            return [Camera(config.camera_id, config.source, config.region("rot"), config.region("roi"))]
        return await gateway.cameras(config.name)

    async def send(post: Post) -> None:
        await gateway.post(post.camera_id, post.snapshot, create=config.request == REQUEST_CREATE,
                           gallery=config.identify_gallery, galleries=config.galleries, meta=config.meta)

    async def report(reports) -> int:
        return await gateway.report(config.name, reports)

    detector = VideoDetector(config, extractor.detect, send, list_cameras, license, report,
                             unique_posts(config, extractor))
    return detector, extractor, gateway


async def serve(config: VideoConfig) -> None:
    if not config.token:
        log.warning("no [video].token (FINDFACE_VIDEO_TOKEN): a gateway that requires tokens will refuse every call")
    keeper = await license_client.start_keeper(config.license_server, license_client.Kind.VIDEO, "video",
                                               config.listen)
    detector, extractor, gateway = build(config, keeper)
    server = GrpcServer(config.listen)
    port = await server.start()
    license_client.follow_health(keeper, server.health)
    await detector.start()
    gauges.watch_video(detector)
    log.info("video detector %r on port %d: %d cameras, posting to %s (%s), extractor %s", config.name, port,
             len(detector.runners), config.gateway, config.request, config.extractor)

    async def on_stop() -> None:
        await detector.stop()
        await extractor.close()
        await gateway.close()

    await run_until_signalled(server, license_client.stopping(on_stop, keeper))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-grpc video face detector")
    parser.add_argument("--config", help="TOML config file (its [video] table)")
    parser.add_argument("--listen", help="host:port for health checks")
    parser.add_argument("--gateway", help="the gateway's host:port")
    parser.add_argument("--extractor", help="the extractor's host:port")
    parser.add_argument("--detector-name", help="run the cameras the gateway lists under this name")
    parser.add_argument("--license-server", help="license server address, host:port")
    args = parser.parse_args(argv)
    overrides = {"listen": args.listen, "gateway": args.gateway, "extractor": args.extractor,
                 "detector_name": args.detector_name, "license_server": args.license_server}
    return server_main(VideoConfig, "video", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
