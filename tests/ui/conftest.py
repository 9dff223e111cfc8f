"""A whole cluster from the README's launcher and a headless Chromium driven by Selenium, for tests/ui.

Chromium and ChromeDriver are Debian's (`chromium`, `chromium-driver`; scripts/setup.sh installs them). The
browser gets the flags that keep it off the network this machine does not have. Screenshots go to
test-artifacts/ui/ (or $FINDFACE_TEST_ARTIFACTS/ui/) and are kept after the run.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from findface_grpc.extractor.models import packs
from tests.gateway.harness import STRICT_MIN_FACE_SIZE
from tests.helpers import ROOT, cluster_config, start_cluster

CHROMIUM = os.environ.get("FINDFACE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FINDFACE_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("FINDFACE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"


@dataclass
class Cluster:
    base_url: str
    admin_token: str
    mongo_uri: str
    data: Path
    gateway: str

    def token_cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "findface_grpc.auth", *args, "--mongo-uri", self.mongo_uri],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout.strip()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    try:
        packs.verify_pack("scrfd-mbf", packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"models not fetched (scripts/setup.sh fetches them): {exc}")
    base = tmp_path_factory.mktemp("ui-cluster")
    # The console shows faces found but too small to enroll; with the extractor's defaults there are none.
    ports = cluster_config(base / "cluster.toml",
                           f"tarantool_memtx_mb = 256\n\n[extractor]\nmin_face_size = {STRICT_MIN_FACE_SIZE}\n")
    log = base / "launcher.log"
    proc = start_cluster(base / "cluster.toml", base / "data", log)
    try:
        found = re.search(r'API token "admin" .*?: (\S+)\s*$', log.read_text(), re.M)
        assert found, log.read_text()
        yield Cluster(f"http://127.0.0.1:{ports['http_port']}", found.group(1),
                      f"mongodb://127.0.0.1:{ports['mongo_port']}/?directConnection=true", base / "data",
                      f"127.0.0.1:{ports['gateway_port']}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver "
                    "(scripts/setup.sh does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    service = Service(CHROMEDRIVER, log_output=str(ARTIFACTS / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
