"""A minimal FaceService client: enroll photos, then identify one. Shows the gRPC API from Python.

Usage: python scripts/demo_client.py [--gateway 127.0.0.1:50051] [--token KEY] [--gallery demo] ENROLL.jpg [...]
           --identify QUERY.jpg
The gateway requires an API token (the cluster launcher logs one on first start; make more with findface-token):
--token, or the environment variable FINDFACE_TOKEN.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from findface_grpc.auth import token_metadata
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="127.0.0.1:50051")
    parser.add_argument("--token", default=os.environ.get("FINDFACE_TOKEN"),
                        help="API token (default: $FINDFACE_TOKEN)")
    parser.add_argument("--gallery", default="default")
    parser.add_argument("--identify", type=Path, required=True, help="photo to search for")
    parser.add_argument("photos", type=Path, nargs="*", help="photos to enroll first (meta = file name)")
    args = parser.parse_args(argv)
    # Without a token only a gateway with require_tokens = false answers.
    auth = token_metadata(args.token) if args.token else ()
    with grpc.insecure_channel(args.gateway) as channel:
        faces = gateway_pb2_grpc.FaceServiceStub(channel)
        if args.gallery != "default":
            try:
                faces.CreateGallery(gateway_pb2.CreateGalleryRequest(name=args.gallery), metadata=auth)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        for photo in args.photos:
            reply = faces.CreateFace(
                gateway_pb2.CreateFaceRequest(
                    image=common_pb2.ImageSource(content=photo.read_bytes()), meta=photo.name, galleries=[args.gallery]
                ),
                metadata=auth,
            )
            print(f"enrolled {photo.name}: face ids {[f.id for f in reply.faces]}")
        reply = faces.Identify(
            gateway_pb2.IdentifyRequest(
                image=common_pb2.ImageSource(content=args.identify.read_bytes()), gallery=args.gallery, n=3
            ),
            metadata=auth,
        )
        print(f"shards answered: {reply.shards_answered}/{reply.shards_total}")
        for result in reply.results:
            for match in result.matches:
                print(f"  face {match.face.id} ({match.face.meta}): confidence {match.confidence:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
