"""The bad-input suite (tests/fuzz/) against one cluster, over and over: does anything restart, does memory settle?

Usage: python scripts/fuzz_soak.py [--soak MINUTES] [--only TEXT] [--shards 1] [--faces DIR]
                                   [--model-pack scrfd-mbf] [--max-ratio 1.25]

Starts a whole cluster with the launcher (findface_grpc.cluster, as scripts/bench_soak.py does: the HTTP gateway
with the launcher's allocator setting) on free ports in a temporary folder, and a photo store on its gateway (as
tests/fuzz/test_slow_clients.py does), then runs the cases of tests/fuzz/test_bad_input.py and
tests/fuzz/test_slow_clients.py (each parametrization; cases that need a server of their own, such as the small
`max_connections` one, are left out) in passes: one pass without --soak, passes for MINUTES minutes with it.
After every case both doors must still answer a normal request, as in the suite. After each pass it prints the
VmRSS of the HTTP gateway and the photo store (from /proc/<pid>/status), and at the end the median and the last
figure against pass 1's (the baseline: the servers were warmed before it). The run fails (exit 1) on a case
failing, a server restarting (its pid changing, or exiting), or the HTTP gateway's median RSS over --max-ratio
(default 1.5) times its figure after pass 1. The median, not the last figure: with these cases RSS moves by
tens of MB between identical passes, down as well as up (where glibc's per-thread arenas keep freed blocks; see
docs/benchmarks.md, issue 12 item 19), with cheroot as with waitress.
"""
from __future__ import annotations

import argparse
import inspect
import itertools
import logging
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import auth  # noqa: E402
from findface_grpc.cluster import Cluster  # noqa: E402
from findface_grpc.v1 import gateway_pb2  # noqa: E402
from tests.fuzz import slow, test_bad_input, test_slow_clients  # noqa: E402
from tests.gateway.harness import face_stub  # noqa: E402
from tests.helpers import bench_cluster_config, faces_dir, labelled_photos  # noqa: E402
from tests.http.harness import HttpClient  # noqa: E402

MODULES = (test_bad_input, test_slow_clients)
# Cases about one run of the suite, not a case to repeat.
LEFT_OUT = {"test_the_http_gateway_was_never_restarted_and_its_memory_is_bounded"}


def cases(fixtures: dict) -> tuple[list[tuple[str, object, dict]], list[str]]:
    """(name, function, arguments) of every case the fixtures can serve, each parametrization apart; and the
    names of those left out."""
    out, left = [], []
    for module in MODULES:
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("test_") or func.__module__ != module.__name__:
                continue
            params = list(inspect.signature(func).parameters)
            grids = [{}]
            for mark in getattr(func, "pytestmark", []):
                if mark.name == "parametrize":
                    names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) \
                        else list(mark.args[0])
                    values = [v if len(names) > 1 else (v,) for v in mark.args[1]]
                    grids = [{**g, **dict(zip(names, v))} for g in grids for v in values]
            missing = [p for p in params if p not in fixtures and p not in grids[0]]
            if name in LEFT_OUT or missing:
                left.append(f"{module.__name__.rsplit('.', 1)[-1]}::{name}" + (f" (needs {', '.join(missing)})"
                                                                              if missing else ""))
                continue
            for grid in grids:
                label = f"{module.__name__.rsplit('.', 1)[-1]}::{name}" + (
                    f"[{'-'.join(map(str, grid.values()))}]" if grid else "")
                out.append((label, func, {p: grid[p] if p in grid else fixtures[p] for p in params}))
    return out, left


def remove_faces(stub) -> int:
    """Deletes every face (the cases enroll some, a few with megabytes of meta): each pass starts from the same
    data, as the suite's fresh cluster would."""
    removed = 0
    while True:
        faces = stub.ListFaces(gateway_pb2.ListFacesRequest(limit=1000), timeout=60).faces
        if not faces:
            return removed
        for face in faces:
            stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id), timeout=60)
        removed += len(faces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak", type=float, default=0, metavar="MINUTES",
                        help="run passes for this many minutes (default: one pass)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--model-pack", default="scrfd-mbf")
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only the cases whose name (module::function) holds TEXT (repeatable)")
    parser.add_argument("--max-ratio", type=float, default=1.5,
                        help="the HTTP gateway's median RSS over its RSS after pass 1, at most (default 1.5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = {name: (identity, (folder / name).read_bytes()) for name, identity in labelled_photos(folder)}
    photo = photos["deepface/img1.jpg"][1] if "deepface/img1.jpg" in photos else next(iter(photos.values()))[1]
    slow.raise_fd_limit(4096)

    with tempfile.TemporaryDirectory(prefix="fuzz-soak-") as work:
        cfg = bench_cluster_config(work, args.shards, args.model_pack)
        cluster = Cluster(cfg)
        store = api = channel = None
        try:
            print(f"starting a {args.shards}-shard cluster ({args.model_pack}) in {work} ...", flush=True)
            addresses = cluster.start()
            http_proc = next(p for p in cluster.processes if p.name == "http")
            mongo = addresses.get("mongodb", cfg.mongo_uri)
            settings = auth.gateway_mongo(mongo_uri=mongo)
            client, tokens = auth.open_store(settings)
            token = tokens.create("fuzz-soak")
            client.close()
            http_address = addresses["http"].removeprefix("http://")
            store = slow.start_store(Path(work) / "store", addresses["gateway"], photo)
            api = HttpClient(http_address, token)
            channel, stub = face_stub(addresses["gateway"], token)
            info = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=30).extractor
            shim = SimpleNamespace(http_address=http_address, token=token, gateway_address=addresses["gateway"],
                                   mongo_uri=mongo, mongo_db=settings.mongo_db, http=http_proc)
            fixtures = {
                "api": api, "stub": stub, "cluster": shim, "photo": photo, "photos": photos,
                "model": (info.embedder_model_id, info.descriptor_dim),
                "http_door": slow.http_door(http_address, token), "store": store,
                "store_door": slow.store_door(store[1]),
            }
            todo, left = cases(fixtures)
            if args.only:
                todo = [case for case in todo if any(text in case[0] for text in args.only)]
            pids = {"HTTP gateway": http_proc.proc.pid, "photo store": store[0].proc.pid}
            procs = {"HTTP gateway": http_proc, "photo store": store[0]}
            print(f"  {len(todo)} cases a pass; left out: {', '.join(left) or 'none'}")
            # Warm: one request of each kind, as the suite's own baseline does.
            for _ in range(3):
                api.post("/v1/detect", files={"photo": ("a.jpg", photo)})
            rss = {name: [] for name in pids}
            start = {name: slow.rss_kb(pid) for name, pid in pids.items()}
            print("  RSS warm: " + ", ".join(f"{n} {kb / 1024:.0f} MB" for n, kb in start.items()), flush=True)
            deadline = time.monotonic() + args.soak * 60
            failures = 0
            for n in itertools.count(1):
                started = time.perf_counter()
                for label, func, kwargs in todo:
                    try:
                        func(**kwargs)
                        assert api.get("/v1/faces", query={"limit": 1}).status == 200
                        stub.ListGalleries(gateway_pb2.ListGalleriesRequest(), timeout=30)
                    except Exception:  # noqa: BLE001 - reported, counted, and the soak goes on
                        failures += 1
                        print(f"  FAILED {label}:\n" + "".join(traceback.format_exc(limit=3)), flush=True)
                    for name, proc in procs.items():
                        if not proc.alive or proc.proc.pid != pids[name]:
                            print(f"  the {name} restarted or exited during {label}")
                            return 1
                removed = remove_faces(stub)
                for name, pid in pids.items():
                    rss[name].append(slow.rss_kb(pid))
                print(f"  pass {n:3d}: " + ", ".join(f"{name} RSS {rss[name][-1] / 1024:5.0f} MB" for name in pids)
                      + f"  ({time.perf_counter() - started:5.1f} s, {removed} faces the cases made removed)",
                      flush=True)
                if time.monotonic() >= deadline:
                    break
        finally:
            if api is not None:
                api.close()
            if channel is not None:
                channel.close()
            if store is not None:
                store[0].stop()
            cluster.stop()

    print(f"\n{n} passes, {failures} case failures, no restart")
    verdict = 0 if failures == 0 else 1
    for name, samples in rss.items():
        base, median, last = samples[0], statistics.median(samples), samples[-1]
        line = (f"{name}: RSS warm {start[name] / 1024:.0f} MB, after pass 1 {base / 1024:.0f} MB, median "
                f"{median / 1024:.0f} MB, highest {max(samples) / 1024:.0f} MB, last {last / 1024:.0f} MB; "
                f"median / pass 1 = {median / base:.3f}, last / pass 1 = {last / base:.3f}")
        if name == "HTTP gateway":
            ok = median / base <= args.max_ratio
            line += f" (median at most {args.max_ratio:.2f}: {'within' if ok else 'OVER'})"
            verdict = verdict or (0 if ok else 1)
        print(line)
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
