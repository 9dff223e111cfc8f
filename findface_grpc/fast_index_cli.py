"""findface-index: build, drop or show a gallery's fast index on every shard (as the original's
findface-tarantool-build-index), through the gateway with an admin token.

    FINDFACE_TOKEN=<admin key> findface-index build GALLERY [--wait] [--nprobe 32] [--gateway 127.0.0.1:50051]
    FINDFACE_TOKEN=<admin key> findface-index drop GALLERY
    FINDFACE_TOKEN=<key> findface-index status [GALLERY]

A build runs in the background on each shard; searches scan the gallery exactly until it is ready. --wait
follows the build until every shard's index is ready (or one failed). A shard that holds no face of the gallery
(build) or no fast index of it (drop) has nothing to do and is no failure. Exit status: 0 done, 1 a shard refused
or failed, or no shard had anything to do, 2 bad usage or the gateway refused the call.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import grpc

from findface_grpc.auth import token_metadata
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

State = common_pb2.FastIndexState.State


def describe(shard: str, state: common_pb2.FastIndexState) -> str:
    name = State.Name(state.state).lower()
    if state.state == State.BUILDING:
        return f"{shard}: {state.gallery}: building, {state.progress:.0%}"
    if state.state == State.FAILED:
        return f"{shard}: {state.gallery}: failed: {state.error}"
    if state.state == State.READY:
        return (f"{shard}: {state.gallery}: ready, {state.listed} faces in {state.lists} lists (probing {state.nprobe}), "
                f"{state.delta} searched exactly until merged, {state.bytes / 2**20:.1f} MiB")
    return f"{shard}: {state.gallery}: {name}"


def show(stub, metadata, gallery: str | None, timeout: float) -> list[common_pb2.FastIndexState]:
    status = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), metadata=metadata, timeout=timeout)
    found = []
    for shard in status.shards:
        name = shard.shard_id or f"shard #{shard.index}"
        if not shard.live:
            print(f"{name}: down: {shard.error}")
            continue
        for state in shard.fast_indexes:
            if gallery is None or state.gallery == gallery:
                print(describe(name, state))
                found.append(state)
    return found


def idle_shards(status: gateway_pb2.ClusterStatusResponse, command: str, gallery: str) -> set[int]:
    """The live shards with nothing to do for `command`: a shard refuses to index a gallery it holds no face of,
    or to drop a fast index it does not have (NOT_FOUND), which is no failure of the command."""
    idle = set()
    for shard in status.shards:
        if not shard.live:
            continue
        if command == "build" and not shard.gallery_counts.get(gallery, 0):
            idle.add(shard.index)
        if command == "drop" and all(state.gallery != gallery for state in shard.fast_indexes):
            idle.add(shard.index)
    return idle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="findface-index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "drop", "status"))
    parser.add_argument("gallery", nargs="?", help="the gallery (\"default\" is every face); required for build and drop")
    parser.add_argument("--gateway", default="127.0.0.1:50051", help="the gateway's gRPC address, host:port")
    parser.add_argument("--nprobe", type=int, default=0, help="lists searched per query (default: the shards' setting)")
    parser.add_argument("--wait", action="store_true", help="after build, wait until every shard's index is ready")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    args = parser.parse_args(argv)
    if args.command != "status" and not args.gallery:
        parser.error(f"{args.command} needs a gallery")
    token = os.environ.get("FINDFACE_TOKEN", "")
    metadata = token_metadata(token) if token else ()
    with grpc.insecure_channel(args.gateway, options=CHANNEL_OPTIONS) as channel:
        stub = gateway_pb2_grpc.FaceServiceStub(channel)
        try:
            if args.command == "status":
                show(stub, metadata, args.gallery, args.timeout)
                return 0
            before = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), metadata=metadata, timeout=args.timeout)
            idle = idle_shards(before, args.command, args.gallery)
            request = gateway_pb2.FastIndexRequest(gallery=args.gallery, nprobe=args.nprobe)
            call = stub.BuildFastIndex if args.command == "build" else stub.DropFastIndex
            reply = call(request, metadata=metadata, timeout=args.timeout)
            failed, done = False, 0
            for shard in reply.shards:
                name = f"shard #{shard.index} ({shard.address})"
                if shard.error and shard.index in idle:
                    nothing = "no face of the gallery" if args.command == "build" else "no fast index of it"
                    print(f"{name}: {args.gallery}: {nothing} here, nothing to {args.command}")
                elif shard.error:
                    print(f"{name}: {shard.error}")
                    failed = True
                else:
                    print(describe(name, shard.state))
                    done += 1
            if not done and not failed:
                print(f"findface-index: no shard had anything to {args.command} for {args.gallery!r}", file=sys.stderr)
                return 1
            if args.command == "build" and args.wait and not failed:
                while True:
                    time.sleep(2)
                    states = show(stub, metadata, args.gallery, args.timeout)
                    if any(s.state == State.FAILED for s in states):
                        return 1
                    if len(states) == done and all(s.state == State.READY for s in states):
                        return 0
            return 1 if failed else 0
        except grpc.RpcError as exc:
            print(f"findface-index: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    raise SystemExit(main())
