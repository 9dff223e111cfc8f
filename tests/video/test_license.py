"""findface-video's license lease against a real license server, with a real extractor and real video: cameras past
the license's camera limit are not run and say why; the limit is shared with other detectors; the grace period on
an outage and the return of the license server are those of the other components."""
from __future__ import annotations

import asyncio
import time

from findface_grpc.license import licensing
from findface_grpc.license.client import Kind, LeaseKeeper
from findface_grpc.video.clients import ExtractorDetector
from findface_grpc.video.domain import Camera, CameraReport
from findface_grpc.video.service import STOPPED, VideoDetector
from tests.license.conftest import LicenseServer, write_license
from tests.video.conftest import video_config


async def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def test_cameras_past_the_license_limit_are_not_run_and_grace_on_an_outage(videos, extractor, tmp_path):
    private, public = licensing.generate_keys(tmp_path / "keys")
    server = LicenseServer(tmp_path / "license", write_license(tmp_path / "a.lic", private, cameras=2), public)
    server.base.mkdir()
    server.start()  # leases renewed every second, 3 s of grace
    # Paced like live cameras, so that they are still running when the license server goes away.
    cameras = [Camera(f"cam-{i}", f"file@15:{videos['street.mp4']}") for i in range(3)]
    reports: list[list[CameraReport]] = []

    async def report(batch: list[CameraReport]) -> int:
        reports.append(batch)
        return len(batch)

    async def listed() -> list[Camera]:
        return cameras

    async def send(post) -> None:
        return None

    async def scenario() -> None:
        keeper = LeaseKeeper(server.address, Kind.VIDEO, "video@test:1", call_timeout_s=1)
        other = LeaseKeeper(server.address, Kind.VIDEO, "video@test:2", call_timeout_s=1)
        client = ExtractorDetector(extractor.address, 30, 40)
        await keeper.start()
        await other.start()
        detector = VideoDetector(video_config(reload_timeout_s=0.5), client.detect, send, listed, keeper, report)
        await detector.start()
        try:
            assert set(detector.runners) == {"cam-0", "cam-1"}
            assert detector.not_running["cam-2"].startswith("over the license's camera limit: this detector's "
                                                            "lease holds 2 of the 3 camera(s)"), detector.not_running
            states = {r.camera_id: (r.running, r.reason) for r in reports[-1]}
            assert states["cam-0"] == (True, "") and states["cam-1"] == (True, "")
            assert states["cam-2"] == (False, detector.not_running["cam-2"])
            status = server.status()
            assert (status.usage.cameras, status.limits.cameras) == (2, 2)
            # The limit is the cluster's: another detector gets none of it while these run.
            assert await other.want(1) == 0
            await other.stop()

            server.stop()
            started = time.monotonic()
            await _until(lambda: not detector.runners, 15, "cameras still running after the grace period")
            assert time.monotonic() - started >= 1.0  # not at once: 3 s of grace from the last answer
            assert set(detector.not_running) == {"cam-0", "cam-1", "cam-2"}
            assert all("unreachable" in why and "grace period" in why for why in detector.not_running.values())

            server.start()  # the same state file: the leases are known again
            await _until(lambda: set(detector.runners) == {"cam-0", "cam-1"}, 20,
                         f"cameras not back with the license server: {detector.not_running}")
            assert list(detector.not_running) == ["cam-2"]
        finally:
            await detector.stop()
            await keeper.stop()
            await client.close()
        assert {r.camera_id: (r.running, r.reason) for r in reports[-1]} == {
            "cam-0": (False, STOPPED), "cam-1": (False, STOPPED)}

    try:
        asyncio.run(scenario())
        assert server.status().usage.cameras == 0  # both leases given back
    finally:
        server.stop()
