"""Extractor server: `findface-extractor [--config FILE]` or `serve(config)`."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnxruntime as ort

from findface_grpc.errors import ConfigError
from findface_grpc.extractor.config import PACK_CUSTOM, ExtractorConfig
from findface_grpc.extractor.models import attributes, packs
from findface_grpc.extractor.pipeline import Limits, Pipeline
from findface_grpc.extractor.service import ExtractorService, ModelInfo
from findface_grpc.extractor.servicer import ExtractorServicer
from findface_grpc.license import client as license_client
from findface_grpc.observability import metrics
from findface_grpc.rpc import GrpcServer, run_until_signalled, server_main
from findface_grpc.v1 import extractor_pb2, extractor_pb2_grpc

log = logging.getLogger(__name__)


def resolve_providers(wanted: tuple[str, ...]) -> list[str]:
    available = ort.get_available_providers()
    if wanted == ("auto",):
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ConfigError(f"onnxruntime providers {missing} are not available here (have {available})")
    return list(wanted)


def build_service(config: ExtractorConfig) -> tuple[ExtractorService, Limits]:
    providers = resolve_providers(config.providers)
    models_dir = Path(config.models_dir) if config.models_dir else packs.default_models_dir()
    if config.model_pack == PACK_CUSTOM:
        detector, embedder, info = packs.load_custom(
            detector_path=Path(config.custom_detector),
            detector_kind=config.custom_detector_kind,
            embedder_path=Path(config.custom_embedder),
            embedder_id=config.custom_embedder_id,
            embedder_mean=config.custom_embedder_mean,
            embedder_std=config.custom_embedder_std,
            providers=providers,
            intra_op_threads=config.intra_op_threads,
            score_threshold=config.detector_score_threshold or None,
            max_batch=config.max_batch,
        )
    else:
        detector, embedder, info = packs.load_pack(
            config.model_pack,
            models_dir,
            providers=providers,
            intra_op_threads=config.intra_op_threads,
            score_threshold=config.detector_score_threshold or None,
            max_batch=config.max_batch,
        )
    limits = Limits(
        max_image_bytes=int(config.max_image_mb * 1_000_000),  # MB of 10**6 bytes, as the gateways count
        max_image_pixels=int(config.max_image_megapixels * 1_000_000),
        min_face_size=config.min_face_size,
        detect_min_face_size=config.detect_min_face_size,
    )
    nets = attributes.load_attributes(
        models_dir, config.attributes, providers, config.intra_op_threads, config.max_batch
    )
    model_info = ModelInfo(
        pack=config.model_pack,
        detector_id=info.detector_id,
        embedder_id=info.embedder_id,
        dim=embedder.dim,
        providers=tuple(providers),
        attribute_models=tuple(sorted(nets.model_ids.items())),
    )
    service = ExtractorService(
        Pipeline(detector, limits, config.extra_detection_passes), embedder, model_info, config.worker_count,
        config.embed_workers, nets,
    )
    return service, limits


async def start(
    config: ExtractorConfig, keeper: license_client.LeaseKeeper | None = None
) -> tuple[GrpcServer, ExtractorService]:
    """Load the models and start serving; returns once the port is open (used by tests and the launcher).
    With a license lease keeper, calls are refused while the license does not allow serving."""
    service, limits = build_service(config)
    if keeper is not None:
        service.attributes.require_feature = keeper.require_feature
    await service.start()
    metrics.EXTRACTOR_WORKERS.set(config.worker_count)
    server = GrpcServer(config.listen, license_client.interceptors(keeper))
    server.add(
        extractor_pb2_grpc.add_ExtractorServicer_to_server,
        ExtractorServicer(service, limits, service.batcher.max_batch),
        extractor_pb2.DESCRIPTOR.services_by_name["Extractor"].full_name,
    )
    port = await server.start()
    license_client.follow_health(keeper, server.health,
                                 extractor_pb2.DESCRIPTOR.services_by_name["Extractor"].full_name)
    log.info(
        "extractor serving on port %d: pack %s (%s + %s, %d-d) on %s",
        port, config.model_pack, service.info.detector_id, service.info.embedder_id, service.info.dim,
        ",".join(service.info.providers),
    )
    return server, service


async def serve(config: ExtractorConfig) -> None:
    # The lease comes first: an extractor past the licensed count exits before loading its models.
    keeper = await license_client.start_keeper(config.license_server, license_client.Kind.EXTRACTOR, "extractor",
                                               config.listen)
    server, service = await start(config, keeper)
    await run_until_signalled(server, license_client.stopping(service.stop, keeper))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-grpc extractor server")
    parser.add_argument("--config", help="TOML config file (its [extractor] table)")
    parser.add_argument("--listen", help="host:port to listen on")
    parser.add_argument("--model-pack", help="scrfd-mbf, yunet-sface or custom")
    parser.add_argument("--license-server", help="license server address, host:port")
    args = parser.parse_args(argv)
    overrides = {"listen": args.listen, "model_pack": args.model_pack, "license_server": args.license_server}
    return server_main(ExtractorConfig, "extractor", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
