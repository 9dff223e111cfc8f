"""Metrics, request ids, traces and logs of a whole launched cluster, read after real traffic: every /metrics the
launcher prints answers; counters and histograms move as the calls made say; one request is found in the logs of
every server it reached, and as one trace in an OTLP receiver; a stopped shard shows in the partial-result
counters; and the dashboard and alert rules in deploy/ name only metrics the cluster serves (checked by a real
Prometheus too, when installed)."""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
import threading
import uuid
from collections import Counter as Tally
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from findface_grpc import launch
from findface_grpc.cluster import METRICS_FIRST_SHARD, METRICS_OFFSETS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.faults.harness import Launched, launch as launch_cluster, wait_for
from tests.helpers import ROOT
from tests.http.harness import multipart

SHARDS = 2
# Followed requests are looked for in the logs of the servers they reached: those log each call at DEBUG; the
# shards write JSON lines. Every server sends its spans to the test's OTLP receiver.
EXTRA_CONFIG = """
[gateway]
log_level = "DEBUG"
otlp_endpoint = "{otlp}"
[extractor]
log_level = "DEBUG"
otlp_endpoint = "{otlp}"
[shard]
log_level = "DEBUG"
log_format = "json"
otlp_endpoint = "{otlp}"
[http]
otlp_endpoint = "{otlp}"
"""
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "findface-dashboard.json"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver, as a collector would run: keeps every span it is sent, with its service."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes
                               if a.key == "service.name")
                for scope in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_request(self, rid: str) -> dict[str, list]:
        with self.lock:
            found: dict[str, list] = {}
            for service, span in self.spans:
                if any(a.key == "findface.request_id" and a.value.string_value == rid for a in span.attributes):
                    found.setdefault(service, []).append(span)
            return found


@pytest.fixture(scope="module")
def receiver():
    servicer = Receiver()
    server = grpc.server(ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.address = f"127.0.0.1:{port}"
    yield servicer
    server.stop(0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, receiver):
    launched = launch_cluster(tmp_path_factory.mktemp("observed"), EXTRA_CONFIG.format(otlp=receiver.address))
    yield launched
    launched.stop()


def metrics_port(cluster: Launched, name: str) -> int:
    base = cluster.ports["metrics_base_port"]
    if name.startswith("shard-"):
        return base + METRICS_FIRST_SHARD + int(name.removeprefix("shard-"))
    return base + METRICS_OFFSETS[name]


SERVERS = ("license", "extractor", "gateway", "http", "upload", *(f"shard-{i}" for i in range(SHARDS)))


class Scrape:
    """One /metrics page, parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset], float] = {}
        self.names: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.names.add(family.name)
            if family.type == "counter":
                self.names.add(family.name + "_total")
            for sample in family.samples:
                self.names.add(sample.name)
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Summed over the labels not given."""
        want = set(labels.items())
        return sum(v for (n, got), v in self.samples.items() if n == name and want <= got)


def scrape(cluster: Launched, name: str) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(cluster, name)}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return Scrape(reply.read().decode())


def scrape_all(cluster: Launched) -> dict[str, Scrape]:
    return {name: scrape(cluster, name) for name in SERVERS}


def identify_request(photo: bytes, gallery: str = "obs") -> gateway_pb2.IdentifyRequest:
    return gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=photo), gallery=gallery, n=3)


@pytest.fixture(scope="module")
def enrolled(cluster, faces) -> dict:
    """Three faces in the gallery "obs" (one photo of one person each), and the photo to identify with."""
    channel, stub = cluster.stub()
    with channel:
        stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name="obs"))
        ids = []
        for name in ("img1.jpg", "img3.jpg", "img5.jpg"):
            photo = (faces / "deepface" / name).read_bytes()
            reply = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=photo),
                                                                  galleries=["obs"]))
            ids.extend(f.id for f in reply.faces)
    assert len(ids) == 3
    return {"ids": ids, "query": (faces / "deepface" / "img2.jpg").read_bytes()}


def test_the_launcher_prints_every_metrics_address_and_each_serves(cluster):
    log = cluster.log.read_text()
    for name in SERVERS:
        url = f"http://127.0.0.1:{metrics_port(cluster, name)}/metrics"
        assert re.search(rf"{name}\s+{re.escape(url)}", log), f"{url} not printed:\n{log}"
        page = scrape(cluster, name)
        # The library's process collector and our thread count, on every server.
        assert page.get("process_resident_memory_bytes") > 0
        assert page.get("process_open_fds") > 0
        assert page.get("findface_process_threads") >= 1
        # Each kind of server exposes its own metrics, never another kind's (a gauge it never set would read 0).
        own = {"license": "findface_license_valid", "extractor": "findface_extractor_workers",
               "gateway": "findface_gateway_partial_results_total", "upload": "findface_dropbox_retries_pending",
               "shard": "findface_shard_faces"}
        kind = name.partition("-")[0]
        for other, metric in own.items():
            assert (metric in page.names) == (other == kind), (name, metric)
        assert ("findface_license_client_serving" in page.names) == (kind in ("extractor", "shard"))


def test_counters_and_histograms_move_as_the_traffic_says(cluster, enrolled):
    identifies, bad = 10, 1
    before = scrape_all(cluster)
    channel, stub = cluster.stub()
    with channel:
        for _ in range(identifies):
            reply = stub.Identify(identify_request(enrolled["query"]))
            assert reply.shards_answered == reply.shards_total == SHARDS
        with pytest.raises(grpc.RpcError) as refused:
            stub.Identify(identify_request(b"not a photo"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = scrape_all(cluster)

    def grew(server: str, name: str, **labels: str) -> float:
        return after[server].total(name, **labels) - before[server].total(name, **labels)

    gateway = {"service": "FaceService", "method": "Identify"}
    assert grew("gateway", "findface_grpc_requests_total", code="OK", **gateway) == identifies
    assert grew("gateway", "findface_grpc_requests_total", code="INVALID_ARGUMENT", **gateway) == bad
    assert grew("gateway", "findface_grpc_request_duration_seconds_count", **gateway) == identifies + bad
    seconds = grew("gateway", "findface_grpc_request_duration_seconds_sum", **gateway)
    assert 0 < seconds < 60 * (identifies + bad)
    # The latency histogram's buckets are cumulative: the +Inf one grew with every call, none grew more.
    inf = grew("gateway", "findface_grpc_request_duration_seconds_bucket", le="+Inf", **gateway)
    assert inf == identifies + bad
    assert grew("gateway", "findface_grpc_request_duration_seconds_bucket", le="0.001", **gateway) <= inf

    # Every identify went once to the extractor and to each shard (the bad photo never got past the extractor).
    extract = {"service": "Extractor", "method": "Extract"}
    assert grew("extractor", "findface_grpc_requests_total", code="OK", **extract) == identifies
    assert grew("extractor", "findface_grpc_requests_total", code="INVALID_ARGUMENT", **extract) == bad
    assert grew("extractor", "findface_extractor_photos_total", call="extract") == identifies
    faces_embedded = grew("extractor", "findface_extractor_faces_total", call="extract")
    assert faces_embedded >= identifies
    # Batches were of the faces embedded: the batch size histogram's sum is that count.
    assert grew("extractor", "findface_extractor_batch_size_sum", model="embedding") == faces_embedded
    assert grew("extractor", "findface_extractor_model_seconds_count", model="detector") == identifies + bad
    for i in range(SHARDS):
        shard = f"shard-{i}"
        assert grew(shard, "findface_grpc_requests_total", service="Shard", method="Search", code="OK") == identifies
        assert grew("gateway", "findface_grpc_client_request_duration_seconds_count", peer=shard,
                    method="Search") == identifies
        assert grew("gateway", "findface_grpc_client_requests_total", peer=shard, method="Search",
                    code="OK") == identifies
    # One query a search, one at a time: each shard scored its part of the gallery once per identify.
    assert sum(grew(f"shard-{i}", "findface_shard_search_queries_total") for i in range(SHARDS)) == SHARDS * identifies
    scanned = sum(grew(f"shard-{i}", "findface_shard_search_rows_scanned_total") for i in range(SHARDS))
    assert scanned == identifies * len(enrolled["ids"])
    assert grew("gateway", "findface_gateway_partial_results_total") == 0
    assert grew("gateway", "findface_gateway_token_cache_total") == identifies + bad

    # What the servers hold: faces in the shards and against the license, leases by kind.
    faces_held = sum(after[f"shard-{i}"].get("findface_shard_faces") for i in range(SHARDS))
    assert faces_held >= len(enrolled["ids"])
    assert after["license"].get("findface_license_faces_used") == faces_held
    assert after["license"].get("findface_license_leases", kind="shard") == SHARDS
    assert after["license"].get("findface_license_leases", kind="extractor") == 1
    assert after["license"].get("findface_license_unlicensed_mode") == 1
    for server in ("extractor", "shard-0"):
        assert after[server].get("findface_license_client_serving") == 1
        assert 0 <= after[server].get("findface_license_client_unanswered_seconds") < 60


def test_http_requests_and_drop_folder_enrollments_are_counted(cluster, enrolled):
    before = {name: scrape(cluster, name) for name in ("http", "upload", "gateway")}
    conn = http.client.HTTPConnection("127.0.0.1", cluster.ports["http_port"], timeout=60)
    body, content_type = multipart({}, {"photo": ("query.jpg", enrolled["query"])})
    headers = {"Authorization": f"Token {cluster.token}", "Content-Type": content_type}
    for _ in range(5):
        conn.request("POST", "/v1/faces/gallery/obs/identify", body, headers)
        reply = conn.getresponse()
        assert reply.status == 200, reply.read()
        reply.read()
    conn.request("GET", "/v1/face/id/not-a-number", headers={"Authorization": f"Token {cluster.token}"})
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 400
    conn.close()

    store = http.client.HTTPConnection("127.0.0.1", cluster.ports["upload_port"], timeout=60)
    auth = "Basic " + base64.b64encode(f"obs:{cluster.token}".encode()).decode()
    name = f"/dropbox/obs/{uuid.uuid4().hex}"
    store.request("PUT", f"{name}.jpg", enrolled["query"], {"Authorization": auth, "Content-Type": "image/jpeg"})
    put = store.getresponse()
    put.read()
    store.request("GET", f"{name}.result.json", headers={"Authorization": auth})
    result = json.loads(store.getresponse().read())
    store.close()
    assert put.status in (201, 204) and result["status"] == "enrolled", result
    after = {name: scrape(cluster, name) for name in ("http", "upload", "gateway")}

    def grew(server: str, metric: str, **labels: str) -> float:
        return after[server].total(metric, **labels) - before[server].total(metric, **labels)

    route = {"route": "/faces/gallery/<gallery>/identify", "method": "POST"}
    assert grew("http", "findface_http_requests_total", status="200", **route) == 5
    assert grew("http", "findface_http_request_duration_seconds_count", **route) == 5
    assert grew("http", "findface_http_requests_total", route="/face/id/<id>", method="GET", status="400") == 1
    # The HTTP gateway's identifies are the gateway's too.
    assert grew("gateway", "findface_grpc_requests_total", service="FaceService", method="Identify", code="OK") == 5
    assert grew("upload", "findface_http_requests_total", route="/dropbox", method="PUT") == 1
    assert grew("upload", "findface_dropbox_drops_total", result="enrolled") == 1
    assert after["upload"].get("findface_dropbox_retries_pending") == 0
    # The drop was enrolled through the gateway, which stored its crops back in the photo store and wrote the
    # face's metadata into MongoDB.
    assert grew("upload", "findface_http_requests_total", route="/faces", method="PUT") >= 1
    assert grew("gateway", "findface_mongo_command_duration_seconds_count", command="insert") >= 1


def lines_with(path, rid: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if rid in line]


def test_one_request_is_followed_through_every_server(cluster, enrolled):
    logs = cluster.data / "logs"
    rid = f"obs-grpc-{uuid.uuid4().hex[:12]}"
    channel, stub = cluster.stub()
    with channel:
        reply, call = stub.Identify.with_call(identify_request(enrolled["query"]), metadata=(("x-request-id", rid),))
        assert reply.results
        assert ("x-request-id", rid) in tuple(call.trailing_metadata())
        # Without an id of its own, a call gets one; an unacceptable one is replaced, never refused.
        for sent in ((), (("x-request-id", "has spaces and is far too long " * 4),)):
            _, call = stub.ListGalleries.with_call(gateway_pb2.ListGalleriesRequest(), metadata=sent)
            got = dict(call.trailing_metadata())["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{16}", got), got
        # Failed calls carry it too, refusals by the token check included.
        with pytest.raises(grpc.RpcError) as failed:
            stub.Identify(identify_request(b"not a photo"), metadata=(("x-request-id", rid + "-bad"),))
        assert ("x-request-id", rid + "-bad") in tuple(failed.value.trailing_metadata())
    with grpc.insecure_channel(cluster.gateway) as tokenless:
        with pytest.raises(grpc.RpcError) as refused:
            gateway_pb2_grpc.FaceServiceStub(tokenless).ListGalleries(
                gateway_pb2.ListGalleriesRequest(), metadata=(("x-request-id", rid + "-auth"),))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert ("x-request-id", rid + "-auth") in tuple(refused.value.trailing_metadata())

    # The gateway and the extractor write human lines, the shards JSON lines; each server logged the call.
    wait_for(lambda: lines_with(logs / "extractor.log", rid), 10, "the extractor's line")
    assert any("FaceService.Identify -> OK" in line for line in lines_with(logs / "gateway.log", rid))
    assert any(f"[request {rid}]" in line for line in lines_with(logs / "extractor.log", rid))
    for i in range(SHARDS):
        found = [json.loads(line) for line in lines_with(logs / f"shard-{i}.log", rid)]
        assert any(entry["request_id"] == rid and entry["message"].startswith("Shard.Search -> OK")
                   and entry["server"] == "shard" and entry["level"] == "DEBUG" for entry in found), found

    # Through the HTTP gateway: its header in, the same id in the answer and in every server's log.
    http_rid = f"obs-http-{uuid.uuid4().hex[:12]}"
    conn = http.client.HTTPConnection("127.0.0.1", cluster.ports["http_port"], timeout=60)
    body, content_type = multipart({}, {"photo": ("query.jpg", enrolled["query"])})
    conn.request("POST", "/v1/faces/gallery/obs/identify", body,
                 {"Authorization": f"Token {cluster.token}", "Content-Type": content_type, "X-Request-Id": http_rid})
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 200 and reply.getheader("X-Request-Id") == http_rid
    conn.request("GET", "/health")
    reply = conn.getresponse()
    reply.read()
    assert re.fullmatch(r"[0-9a-f]{16}", reply.getheader("X-Request-Id") or "")
    conn.close()
    wait_for(lambda: lines_with(logs / "shard-0.log", http_rid), 10, "shard 0's line")
    assert any(f"[request {http_rid}]" in line and "-> 200" in line for line in lines_with(logs / "http.log", http_rid))
    for server in ("gateway", "extractor", "shard-1"):
        assert lines_with(logs / f"{server}.log", http_rid), server


def test_one_request_is_one_trace_across_the_servers(cluster, enrolled, receiver):
    rid = f"obs-trace-{uuid.uuid4().hex[:12]}"
    body, content_type = multipart({}, {"photo": ("query.jpg", enrolled["query"])})
    conn = http.client.HTTPConnection("127.0.0.1", cluster.ports["http_port"], timeout=60)
    conn.request("POST", "/v1/faces/gallery/obs/identify", body,
                 {"Authorization": f"Token {cluster.token}", "Content-Type": content_type, "X-Request-Id": rid})
    reply = conn.getresponse()
    reply.read()
    conn.close()
    assert reply.status == 200
    services = {"findface-http", "findface-gateway", "findface-extractor", "findface-shard"}
    # Spans are sent in batches every few seconds.
    spans = wait_for(lambda: (found := receiver.of_request(rid)).keys() >= services
                     and len(found["findface-shard"]) == SHARDS and found, 30, "spans from every server")
    (http_span,) = spans["findface-http"]
    gateway_span = next(s for s in spans["findface-gateway"] if s.name == "FaceService/Identify")
    assert http_span.name == "POST /faces/gallery/<gallery>/identify"
    assert {s.trace_id for ss in spans.values() for s in ss} == {http_span.trace_id}
    assert gateway_span.parent_span_id == http_span.span_id
    (extract_span,) = spans["findface-extractor"]
    assert extract_span.name == "Extractor/Extract" and extract_span.parent_span_id == gateway_span.span_id
    assert all(s.name == "Shard/Search" and s.parent_span_id == gateway_span.span_id for s in spans["findface-shard"])


def test_a_stopped_shard_shows_as_partial_results(cluster, enrolled):
    before = scrape(cluster, "gateway")
    pid = cluster.pids()["shard-1"]
    channel, stub = cluster.stub()
    os.kill(pid, signal.SIGSTOP)
    try:
        with channel:
            for _ in range(3):
                reply = stub.Identify(identify_request(enrolled["query"]))
                assert (reply.shards_answered, reply.shards_total) == (1, SHARDS)
        after = scrape(cluster, "gateway")
    finally:
        os.kill(pid, signal.SIGCONT)
    partial = "findface_gateway_partial_results_total"
    assert after.get(partial) - before.get(partial) == 3
    missed = {f"shard-{i}": after.get("findface_gateway_shard_search_failures_total", shard=f"shard-{i}")
              - before.get("findface_gateway_shard_search_failures_total", shard=f"shard-{i}") for i in range(SHARDS)}
    assert missed == {"shard-0": 0, "shard-1": 3}
    # Searches that reached the stopped shard ended without its answer (deadline or cancelled), never OK.
    late = {code: after.total("findface_grpc_client_requests_total", peer="shard-1", method="Search", code=code)
            - before.total("findface_grpc_client_requests_total", peer="shard-1", method="Search", code=code)
            for code in ("OK", "DEADLINE_EXCEEDED", "CANCELLED")}
    assert late["OK"] == 0 and late["DEADLINE_EXCEEDED"] + late["CANCELLED"] == 3, late


METRIC_NAME = re.compile(r"\b((?:findface|process)_[a-z0-9_]+)\b")


def named_in_deploy() -> dict[str, set[str]]:
    """Metric names each expression of the alert rules and the dashboard uses, by where they come from."""
    alerts = yaml.safe_load(ALERTS.read_text())
    exprs = {f"alert {rule['alert']}": rule["expr"] for group in alerts["groups"] for rule in group["rules"]}
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return {where: set(METRIC_NAME.findall(expr)) for where, expr in exprs.items()}


def test_dashboard_and_alert_rules_name_only_metrics_the_cluster_serves(cluster, enrolled):
    served = set().union(*(page.names for page in scrape_all(cluster).values()))
    named = named_in_deploy()
    # Every expression names a metric of ours, but the one on Prometheus's own `up`.
    assert len(named) > 30 and [where for where, names in named.items() if not names] == ["alert FindFaceServerDown"]
    missing = {where: sorted(names - served) for where, names in named.items() if names - served}
    assert not missing, missing
    # The alerts the issue asks for are there.
    alerts = " ".join(named)
    for wanted in ("FindFaceServerDown", "FindFacePartialResults", "FindFaceExtractorSaturated",
                   "FindFaceLicenseExpiresSoon", "FindFaceFaceQuotaNearlyUsed", "FindFaceRepairBacklog",
                   "FindFaceDropFolderFailures"):
        assert f"alert {wanted}" in alerts
    dashboard = json.loads(DASHBOARD.read_text())
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                    reason="Prometheus not installed (scripts/setup.sh --tests installs it)")
def test_prometheus_scrapes_the_cluster_and_evaluates_every_rule(cluster, enrolled, tmp_path):
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(SCRAPE_CONFIG)]):
        checked = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = Tally()
    scrape_configs = []
    for name in SERVERS:
        job = "findface-shard" if name.startswith("shard-") else f"findface-{name}"
        jobs[job] += 1
        scrape_configs.append({"job_name": f"{job}-{jobs[job]}" if job == "findface-shard" else job,
                               "static_configs": [{"targets": [f"127.0.0.1:{metrics_port(cluster, name)}"],
                                                   "labels": {"job": job}}]})
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(ALERTS)],
              "scrape_configs": scrape_configs}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = launch.free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)

    def api(path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=5) as reply:
            return json.loads(reply.read())["data"]

    try:
        # Ours, not another Prometheus that took the port first.
        flags = wait_for(lambda: proc.poll() is None and api("status/flags"), 60, "Prometheus answering")
        assert flags["storage.tsdb.path"] == str(tmp_path / "tsdb"), (tmp_path / "prometheus.log").read_text()

        def all_up():
            targets = api("targets")["activeTargets"]
            return len(targets) == len(SERVERS) and all(t["health"] == "up" for t in targets) or None

        wait_for(all_up, 60, "every target scraped")

        def rules_evaluated():
            rules = [r for g in api("rules")["groups"] for r in g["rules"]]
            # Never evaluated yet: Go's zero time.
            done = rules and all(r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules)
            return rules if done else None

        rules = wait_for(rules_evaluated, 60, "every rule evaluated without error")
        assert len(rules) == len(yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"])
        # Nothing is wrong with this cluster: the rules that need no time window fire for none of it.
        firing = [(r["name"], r["alerts"]) for r in rules if r["state"] == "firing"]
        assert not firing, firing
        faces = api("query?query=sum(findface_shard_faces)")["result"]
        assert float(faces[0]["value"][1]) >= len(enrolled["ids"])
    finally:
        proc.terminate()
        proc.wait(30)
