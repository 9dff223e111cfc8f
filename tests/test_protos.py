import subprocess
import sys

from tests.helpers import ROOT


def test_generated_code_is_fresh():
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_service_contract_exists():
    from findface_grpc.v1 import extractor_pb2, gateway_pb2, license_pb2, shard_pb2

    services = {
        "Extractor": extractor_pb2, "Shard": shard_pb2, "FaceService": gateway_pb2, "License": license_pb2,
    }
    for name, module in services.items():
        assert name in module.DESCRIPTOR.services_by_name
    assert {"Add", "Remove", "Get", "Search", "Stats"} <= set(
        shard_pb2.DESCRIPTOR.services_by_name["Shard"].methods_by_name
    )
