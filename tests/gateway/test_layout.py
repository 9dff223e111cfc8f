"""The data layout is recorded by a cluster's first gateway and checked at every start: a gateway configured with
another shard count, cell count or cell_map over the same MongoDB, or with the same shards in another order,
refuses to start, naming both layouts (it used to start, and gallery changes of most faces went to shards that
did not hold them, acknowledged and lost)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from findface_grpc import launch
from findface_grpc.gateway.cells import CellMap
from findface_grpc.errors import ConfigError
from findface_grpc.gateway.layout import (
    LAYOUT_ID, ConfiguredShard, cell_ranges, check, describe, disagreement, misplaced, recorded_order)
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import Cluster, address, gateway_process


@pytest.mark.parametrize(
    "owners, expected",
    [
        ((0, 0, 1, 1), ["0-1:0", "2-3:1"]),
        ((0,), ["0:0"]),
        ((0, 1, 0, 0), ["0:0", "1:1", "2-3:0"]),
        (tuple(CellMap.from_config(1024, 3).owners), ["0-341:0", "342-682:1", "683-1023:2"]),
    ],
)
def test_cell_ranges_are_cell_map_entries(owners, expected):
    assert cell_ranges(owners) == expected
    assert CellMap.from_config(len(owners), max(owners) + 1, expected).owners == tuple(owners)


def test_layouts_disagree_on_any_of_shards_cells_and_cell_map():
    two = describe(CellMap.from_config(1024, 2))
    assert disagreement(two, describe(CellMap.from_config(1024, 2))) is None
    assert disagreement(two, describe(CellMap.from_config(1024, 2, ["0-511:0", "512-1023:1"]))) is None
    for other in (CellMap.from_config(1024, 4), CellMap.from_config(512, 2),
                  CellMap.from_config(1024, 2, ["0-499:0", "500-1023:1"])):
        why = disagreement(two, describe(other))
        assert why is not None and "placed with 2 shards, 1024 cells" in why and "'layout'" in why


def shards(*ids):
    return [ConfiguredShard(f"10.0.0.{i}:50061", sid) for i, sid in enumerate(ids)]


@pytest.mark.parametrize("recorded, configured, problem", [
    (["a", "b", "c"], ("a", "b", "c"), None),
    (["a", "b", "c"], ("a", None, "c"), None),  # one down at start: the others are where they were
    (["a", "b", "c"], ("a", "x", "c"), None),  # b replaced in place (new shards after a re-extraction)
    ([], ("a", "b"), None),  # recorded before shards were: nothing to compare with yet
    (["a", "b", "c"], ("b", "a", "c"), "in the order ['a', 'b', 'c'], but this gateway lists them as ['b at"),
    (["a", "b", "c"], (None, "a", "x"), "lists them as ['(no answer) at 10.0.0.0:50061', 'a at 10.0.0.1:50061'"),
    (["a", "b"], ("a", "a"), "shards 0 and 1 of this gateway's list both answer as shard_id 'a'"),
])
def test_shards_out_of_their_recorded_order_are_named(recorded, configured, problem):
    why = misplaced(recorded, shards(*configured))
    assert why is None if problem is None else (why is not None and problem in why), why


def test_the_order_recorded_keeps_what_was_not_seen():
    assert recorded_order(["a", "b", "c"], shards("a", None, "x")) == ["a", "b", "x"]
    assert recorded_order([], shards("a", None)) == ["a", None]


def test_check_records_the_shards_and_refuses_them_reordered(store):
    collection = store.db["cluster"]
    cells = CellMap.from_config(8, 2)
    # A layout recorded before shard ids were: the first start that sees the shards records them.
    collection.insert_one({"_id": LAYOUT_ID, **describe(cells)})
    check(collection, cells, shards("shard-0", None))
    check(collection, cells, shards("shard-0", "shard-1"))
    assert collection.find_one({"_id": LAYOUT_ID})["shard_ids"] == ["shard-0", "shard-1"]
    with pytest.raises(ConfigError, match=r"in the order \['shard-0', 'shard-1'\], but this gateway lists them as "
                                          r"\['shard-1 at 10.0.0.0:50061', 'shard-0 at 10.0.0.1:50061'\]"):
        check(collection, cells, shards("shard-1", "shard-0"))
    # Resharding the supported way (README): the layout document deleted, the new one recorded from scratch.
    collection.delete_one({"_id": LAYOUT_ID})
    more = CellMap.from_config(8, 3, ["0-3:0", "4-5:1", "6-7:2"])
    check(collection, more, shards("shard-0", "shard-1", "shard-2"))
    assert collection.find_one({"_id": LAYOUT_ID})["shard_ids"] == ["shard-0", "shard-1", "shard-2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, extractor, mongo):
    cluster = Cluster(tmp_path_factory.mktemp("layout"), "layout", 2, extractor, mongo).start()
    yield cluster
    cluster.stop()


def exit_code(proc: launch.ManagedProcess, timeout: float = 60.0) -> int | None:
    deadline = time.monotonic() + timeout
    while proc.alive:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return proc.proc.returncode


def test_a_gateway_with_another_layout_refuses_to_start(cluster, tmp_path):
    vectors = np.random.default_rng(3).normal(size=(8, 512))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("<f4")
    request = gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(
        descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=v.tobytes())) for v in vectors])
    list(cluster.stub.ImportFaces(iter([request]), timeout=60))

    db = f"cluster_{cluster.name}"
    one_shard = gateway_process("gateway-one-shard", tmp_path, address(launch.free_port()),
                                cluster.shards.addresses[:1], cluster.extractor, cluster.mongo, db, cells=cluster.cells)
    more_cells = gateway_process("gateway-more-cells", tmp_path, address(launch.free_port()),
                                 cluster.shards.addresses, cluster.extractor, cluster.mongo, db, cells=16)
    for proc in (one_shard, more_cells):
        proc.start()
    try:
        for proc, configured in ((one_shard, "configured with 1 shards, 8 cells"),
                                 (more_cells, "configured with 2 shards, 16 cells")):
            assert exit_code(proc) == 2, proc.tail()
            log = proc.tail()
            assert "placed with 2 shards, 8 cells and cell_map ['0-3:0', '4-7:1']" in log and configured in log, log
    finally:
        one_shard.stop()
        more_cells.stop()

    # The cluster's own layout still starts.
    cluster.restart()
    assert cluster.stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=10).shards_live == 2


def test_a_gateway_with_the_shards_in_another_order_refuses_to_start(cluster, tmp_path):
    first, second = cluster.shards.addresses
    swapped = gateway_process("gateway-swapped", tmp_path, address(launch.free_port()), [second, first],
                              cluster.extractor, cluster.mongo, f"cluster_{cluster.name}", cells=cluster.cells)
    swapped.start()
    try:
        assert exit_code(swapped) == 2, swapped.tail()
        log = swapped.tail()
        assert (f"in the order ['shard-0', 'shard-1'], but this gateway lists them as ['shard-1 at {second}', "
                f"'shard-0 at {first}']") in log, log
    finally:
        swapped.stop()
