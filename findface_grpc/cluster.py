"""`findface-cluster`: the whole cluster on one machine, all data under one folder.

Starts, in order: the license server (in unlicensed mode unless license_file and license_public_key are set),
SecantusDB (unless an external MongoDB URI is configured), one Tarantool per shard with its shard server, the
extractor, then the gateway (the last three told the license server's address), the HTTP gateway and the photo
store with its WebDAV drop folder (findface-upload), and with [cluster].video_port set the video detector
(findface-video); waits until each reports healthy; prints the addresses; then
supervises them (a child that exits is restarted, see findface_grpc.supervise) until Ctrl-C or SIGTERM stops
everything in reverse order. One launcher per data folder: a second one refuses to start. Every server can equally
be started alone on another host with its own config (see README, "Scaling out", and deploy/systemd/): this
launcher is a convenience, not a requirement.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pymongo.errors import PyMongoError

from findface_grpc import auth
from findface_grpc import config as config_mod
from findface_grpc import launch, supervise
from findface_grpc.errors import ConfigError, FindFaceError, NotFound
from findface_grpc.gateway.metadata import redact

log = logging.getLogger(__name__)

# Distinct from 1 (did not start) and 2 (bad config): scripts can tell "already running" apart.
EXIT_ALREADY_RUNNING = 3
# How often the launcher looks for children that exited: the first restart comes this much after at most.
SUPERVISE_INTERVAL_S = 0.25
# The video detector's token name.
VIDEO_TOKEN = "video"
# Each server's config table (which names its FINDFACE_<TABLE>_* variables), and its /metrics port's offset from
# metrics_base_port; shard i's is METRICS_FIRST_SHARD + i, the video detector's the one after the last shard's.
TABLES = {"findface_grpc.license.server": "license", "findface_grpc.extractor.server": "extractor",
          "findface_grpc.gateway.server": "gateway", "gateway_http.server": "http", "gateway_http.upload": "upload",
          "findface_grpc.shard.server": "shard", "findface_grpc.video.server": "video"}
METRICS_OFFSETS = {"license": 0, "extractor": 1, "gateway": 2, "http": 3, "upload": 4}
METRICS_FIRST_SHARD = 5


@dataclass(frozen=True)
class ClusterConfig:
    data_dir: str = "var"
    host: str = "127.0.0.1"
    shards: int = 2
    gateway_port: int = 50051
    # The legacy facenapi HTTP API (gateway_http), started after the gateway; 0 leaves it out.
    http_port: int = 8000
    # The photo store and WebDAV drop folder (findface-upload, data in <data_dir>/upload), started after the
    # gateway, which keeps photos and crops there; 0 leaves it out (and faces then carry no stored URLs).
    upload_port: int = 3333
    # The video face detector (findface-video, its settings in [video]), health checks on this port, started last
    # with a token of its own ("video", made an admin token of the gateway's so that it sees its cameras' urls);
    # 0 (the default) leaves it out.
    video_port: int = 0
    extractor_port: int = 50052
    shard_base_port: int = 50061
    tarantool_base_port: int = 3301
    mongo_port: int = 27117
    # The license server starts first. With both of these set it enforces that signed license (see
    # findface-license); with neither it runs in unlicensed mode, without limits.
    license_port: int = 50070
    license_file: str = ""
    license_public_key: str = ""
    # An external MongoDB (replica set) instead of the bundled SecantusDB, e.g. mongodb://db1,db2/?replicaSet=rs
    mongo_uri: str = ""
    # Every server's Prometheus /metrics, on consecutive ports from this one: the license server, the extractor,
    # the gateway, the HTTP gateway, the photo store, then shard 0, 1, ..., then the video detector; 0: no /metrics.
    metrics_base_port: int = 9150
    model_pack: str = "scrfd-mbf"
    tarantool_memtx_mb: int = 2048
    start_timeout_s: float = 120.0
    log_level: str = "INFO"

    def validate(self) -> None:
        if not 1 <= self.shards <= 64:
            raise ConfigError("[cluster].shards must be in 1..64")
        if self.tarantool_memtx_mb < 64:
            # Tarantool's own floor (shard/storage.lua): refused here, before anything is started.
            raise ConfigError("[cluster].tarantool_memtx_mb must be at least 64")
        if bool(self.license_file) != bool(self.license_public_key):
            raise ConfigError("[cluster].license_file and license_public_key are set together (or neither)")
        if not 0 <= self.http_port < 65536:
            raise ConfigError("[cluster].http_port must be in 0..65535 (0: no HTTP gateway)")
        if not 0 <= self.upload_port < 65536:
            raise ConfigError("[cluster].upload_port must be in 0..65535 (0: no photo store)")
        if not 0 <= self.video_port < 65536:
            raise ConfigError("[cluster].video_port must be in 0..65535 (0: no video detector)")
        if self.metrics_base_port and not 0 < self.metrics_base_port <= 65535 - METRICS_FIRST_SHARD - self.shards:
            raise ConfigError("[cluster].metrics_base_port must leave room for every server's port below 65536 "
                              "(0: no /metrics)")


class Cluster:
    def __init__(self, cfg: ClusterConfig, config_path: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.config_args = ["--config", config_path] if config_path else []
        self.data = Path(cfg.data_dir).resolve()
        self.processes: list[launch.ManagedProcess] = []
        self.addresses: dict[str, str] = {}
        self.metrics: dict[str, str] = {}  # server name -> its /metrics URL

    def _addr(self, port: int) -> str:
        return f"{self.cfg.host}:{port}"

    def _server(self, name: str, module: str, args: list[str], env: dict | None = None) -> launch.ManagedProcess:
        return launch.python_server(name, module, [*self.config_args, *args], self.data / "logs" / f"{name}.log",
                                    {**(env or {}), **self._metrics_env(name, module)})

    def _metrics_env(self, name: str, module: str) -> dict[str, str]:
        """The server's metrics_listen, in its own table's environment variable."""
        if not self.cfg.metrics_base_port:
            return {}
        table = TABLES[module]
        if table == "shard":
            offset = METRICS_FIRST_SHARD + int(name.removeprefix("shard-"))
        elif table == "video":
            offset = METRICS_FIRST_SHARD + self.cfg.shards
        else:
            offset = METRICS_OFFSETS[table]
        address = self._addr(self.cfg.metrics_base_port + offset)
        self.metrics[name] = f"http://{address}/metrics"
        return {f"FINDFACE_{table.upper()}_METRICS_LISTEN": address}

    def start(self) -> dict[str, str]:
        cfg = self.cfg
        timeout = cfg.start_timeout_s
        self.data.mkdir(parents=True, exist_ok=True)
        license_server = self._addr(cfg.license_port)
        license_args = ["--listen", license_server, "--state-file", str(self.data / "license" / "state.json")]
        if cfg.license_file:
            license_args += ["--license", str(Path(cfg.license_file).resolve()),
                             "--public-key", str(Path(cfg.license_public_key).resolve())]
        self._start_healthy([(self._server("license", "findface_grpc.license.server", license_args), license_server)],
                            timeout)
        self.addresses["license"] = license_server
        licensed = ["--license-server", license_server]
        mongo_uri = cfg.mongo_uri
        if not mongo_uri:
            mongo = launch.mongo_process(self.data / "mongo", cfg.mongo_port, cfg.host)
            self._run(mongo)
            launch.wait_tcp(cfg.host, cfg.mongo_port, timeout, mongo)
            mongo_uri = f"mongodb://{self._addr(cfg.mongo_port)}/?directConnection=true"
            self.addresses["mongodb"] = mongo_uri
        # Before any other token exists: the first start's "admin" token is made when there is none at all.
        self._first_token(mongo_uri)
        upload = self._addr(cfg.upload_port) if cfg.upload_port else ""
        upload_token = self._service_token(mongo_uri, "upload") if upload else ""
        video_token = self._service_token(mongo_uri, VIDEO_TOKEN) if cfg.video_port else ""

        # Tarantools first (each shard server needs its own), then the shard servers and the extractor, which
        # load independently and can start side by side.
        tarantools = []
        for i in range(cfg.shards):
            port = cfg.tarantool_base_port + i
            tt = launch.tarantool_process(self.data / f"shard-{i}", port, cfg.tarantool_memtx_mb, cfg.host, f"tarantool-{i}")
            self._run(tt)
            tarantools.append((tt, port))
        for tt, port in tarantools:
            launch.wait_tcp(cfg.host, port, timeout, tt)

        pending = []
        shard_addresses = []
        for i in range(cfg.shards):
            address = self._addr(cfg.shard_base_port + i)
            shard_addresses.append(address)
            proc = self._server(
                f"shard-{i}",
                "findface_grpc.shard.server",
                ["--listen", address, "--tarantool", self._addr(cfg.tarantool_base_port + i), "--shard-id", f"shard-{i}",
                 "--snapshot-dir", str(self.data / f"shard-{i}" / "index"), *licensed],
                launch.ALLOCATOR_ENV,
            )
            pending.append((proc, address))
            self.addresses[f"shard-{i}"] = address
        extractor = self._addr(cfg.extractor_port)
        pending.append((self._server("extractor", "findface_grpc.extractor.server",
                                     ["--listen", extractor, "--model-pack", cfg.model_pack, *licensed]), extractor))
        self.addresses["extractor"] = extractor
        self._start_healthy(pending, timeout)

        gateway = self._addr(cfg.gateway_port)
        # Secrets go to the children in their environment, not on their command lines (ps shows those).
        gateway_env = {"FINDFACE_GATEWAY_UPLOAD_URL": f"http://{upload}",
                       "FINDFACE_GATEWAY_UPLOAD_PASSWORD": upload_token} if upload_token else {}
        if video_token:
            admins = auth.gateway_mongo(self.config_path, mongo_uri).admin_tokens
            gateway_env["FINDFACE_GATEWAY_ADMIN_TOKENS"] = ",".join(dict.fromkeys((*admins, VIDEO_TOKEN)))
        self._start_healthy(
            [(
                self._server(
                    "gateway",
                    "findface_grpc.gateway.server",
                    ["--listen", gateway, "--extractor", extractor, "--shards", ",".join(shard_addresses),
                     "--mongo-uri", mongo_uri, *licensed],
                    gateway_env,
                ),
                gateway,
            )],
            timeout,
        )
        self.addresses["gateway"] = gateway
        if cfg.http_port:
            http = self._addr(cfg.http_port)
            proc = self._server("http", "gateway_http.server",
                                ["--listen", http, "--gateway", gateway, "--license-server", license_server],
                                {"FINDFACE_HTTP_LAUNCHER_STATUS_FILE": str(self.data / supervise.STATUS_FILE),
                                 **launch.ALLOCATOR_ENV})
            self._run(proc)
            launch.wait_http_ok(http, "/health", timeout, proc)
            self.addresses["http"] = f"http://{http}"
            self.addresses["console"] = f"http://{http}/ (the web console: log in with an API token)"
        if upload:
            upload_env = {"FINDFACE_UPLOAD_GATEWAY_TOKEN": upload_token,
                          "FINDFACE_UPLOAD_MONGO_DB": auth.gateway_mongo(self.config_path, mongo_uri).mongo_db}
            proc = self._server(
                "upload", "gateway_http.upload",
                ["--listen", upload, "--root", str(self.data / "upload"), "--gateway", gateway,
                 "--mongo-uri", mongo_uri],
                upload_env if upload_token else {},
            )
            self._run(proc)
            launch.wait_tcp(cfg.host, cfg.upload_port, timeout, proc)
            self.addresses["upload"] = f"http://{upload}"
        if video_token:
            video = self._addr(cfg.video_port)
            self._start_healthy([(self._server("video", "findface_grpc.video.server",
                                               ["--listen", video, "--gateway", gateway, "--extractor", extractor,
                                                *licensed],
                                               {"FINDFACE_VIDEO_TOKEN": video_token}), video)], timeout)
            self.addresses["video"] = video
        return self.addresses

    def _service_token(self, mongo_uri: str, name: str) -> str:
        """A fresh token `name` for one of the cluster's own servers, the last one revoked (its plaintext is
        kept nowhere, so every start makes a new one). Empty when the token store cannot be reached."""
        try:
            client, store = auth.open_store(auth.gateway_mongo(self.config_path, mongo_uri))
            try:
                try:
                    store.revoke(name)
                except NotFound:
                    pass
                return store.create(name)
            finally:
                client.close()
        except (FindFaceError, PyMongoError) as exc:
            log.error("could not create the %r token (%s): the server that uses it cannot call the gateway",
                      name, getattr(exc, "message", type(exc).__name__))
            return ""

    def _first_token(self, mongo_uri: str) -> None:
        """On a cluster's first start, create the token "admin", so that the gateway (which requires tokens)
        can be used at once; it is logged this once only. Later starts find a token (even a revoked one) and
        leave tokens to `findface-token`."""
        try:
            settings = auth.gateway_mongo(self.config_path, mongo_uri)
            client, store = auth.open_store(settings)
            try:
                if store.exists():
                    return
                token = store.create("admin")
            finally:
                client.close()
        except (FindFaceError, PyMongoError) as exc:
            log.error("could not create the first API token (%s); create one with findface-token",
                      getattr(exc, "message", type(exc).__name__))
            return
        try:
            tool = [launch.venv_bin("findface-token")]
        except FileNotFoundError:  # installed before the script existed: the module runs the same CLI
            tool = [sys.executable, "-m", "findface_grpc.auth"]
        more = [*tool, "create", "NAME", "--mongo-uri", redact(mongo_uri)]
        if self.config_path:
            more += ["--config", self.config_path]
        log.info("API token \"admin\" (shown only now; clients send it as 'authorization: Token <key>'): %s", token)
        log.info("more tokens: %s   (list / revoke NAME_OR_ID likewise)", shlex.join(more))

    def _run(self, proc: launch.ManagedProcess) -> None:
        self.processes.append(proc)
        proc.start()
        # At every start, not only once all are up: a launcher killed half way leaves its pid file too.
        supervise.write_pids(self.data, self.processes)

    def _start_healthy(self, items: list[tuple[launch.ManagedProcess, str]], timeout: float) -> None:
        for proc, _ in items:
            self._run(proc)
        with ThreadPoolExecutor(len(items)) as pool:
            for fut in [pool.submit(launch.wait_grpc_healthy, address, timeout, proc) for proc, address in items]:
                fut.result()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        supervise.remove_pids(self.data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a whole findface-grpc cluster on this machine")
    parser.add_argument("--config", help="TOML config: [cluster] plus each server's own table")
    parser.add_argument("--data-dir", help="folder for all data and logs (default ./var)")
    parser.add_argument("--shards", type=int, help="number of shards (default 2)")
    parser.add_argument("--model-pack", help="scrfd-mbf (default) or yunet-sface")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"data_dir": args.data_dir, "shards": args.shards, "model_pack": args.model_pack}.items()
                 if v is not None}
    try:
        cfg = config_mod.load(ClusterConfig, "cluster", args.config, overrides=overrides)
    except ConfigError as exc:
        sys.stderr.write(f"findface-cluster: {exc}\n")
        return 2
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(message)s")
    data = Path(cfg.data_dir).resolve()
    # Before anything else: a second launcher must not revoke the running cluster's tokens or start its servers.
    try:
        lock = supervise.hold_lock(data)
    except supervise.AlreadyRunning as exc:
        sys.stderr.write(f"findface-cluster: another launcher (pid {exc}) is running over {data}; stop it first, "
                         f"or give this one another --data-dir and other ports\n")
        return EXIT_ALREADY_RUNNING
    try:
        return _run(cfg, args.config, data)
    finally:
        os.close(lock)


def _run(cfg: ClusterConfig, config_path: str | None, data: Path) -> int:
    stopped = supervise.stop_previous(data)
    if stopped:
        log.warning("stopped %s, left running by the previous launcher", ", ".join(stopped))
    stop = threading.Event()

    class Interrupted(Exception):
        pass

    def during_start(*_):
        raise Interrupted

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, during_start)
    cluster = Cluster(cfg, config_path)
    try:
        addresses = cluster.start()
    except Interrupted:
        log.info("interrupted while starting; stopping what started")
        cluster.stop()
        return 0
    except (RuntimeError, TimeoutError, OSError) as exc:
        log.error("cluster did not start: %s (logs in %s)", exc, cluster.data / "logs")
        cluster.stop()
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("cluster is up; data in %s, logs in %s", cluster.data, cluster.data / "logs")
    for name, address in addresses.items():
        log.info("  %-10s %s", name, address)
    if cluster.metrics:
        log.info("Prometheus metrics (no token: keep these ports private):")
        for name, url in cluster.metrics.items():
            log.info("  %-10s %s", name, url)
    log.info("Ctrl-C stops it; each server's state is in %s", cluster.data / supervise.STATUS_FILE)
    supervisor = supervise.Supervisor(cluster.data, cluster.processes)
    try:
        while not stop.wait(SUPERVISE_INTERVAL_S):
            supervisor.tick()
    finally:
        log.info("stopping")
        cluster.stop()
        supervisor.write_status(launcher="stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
