"""The rows' residuals (rows.py): what each code rounded away, kept so that a search re-scores its candidates
without reading the stored descriptors; rows with a clipped component, which residuals cannot give back."""
from __future__ import annotations

import numpy as np
import pytest

from findface_grpc.errors import Unavailable
from findface_grpc.shard import rows as rows_mod
from findface_grpc.shard.index import DEFAULT_GALLERY, FaceIndex
from tests.shard.test_index import residual_error, unit


def test_residuals_give_scores_within_their_step_of_float32_without_reading_the_store():
    rng = np.random.default_rng(14)
    vectors = unit(rng, 3000, 512)
    idx = FaceIndex(512, residuals=True)
    idx.upsert(np.arange(1, 3001), vectors, [()] * 3000)

    def unreachable(ids):
        raise AssertionError(f"the store was asked for {ids}")

    queries = vectors[:40] + 0.03 * rng.standard_normal((40, 512)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for query, hits in zip(queries, idx.search(queries, DEFAULT_GALLERY, 10, exact=unreachable)):
        expected = vectors[[h.face_id - 1 for h in hits]] @ query
        assert [h.face_id - 1 for h in hits] == np.argsort(-(vectors @ query), kind="stable")[:10].tolist()
        assert [h.score for h in hits] == pytest.approx(expected.tolist(), abs=residual_error(512))


def test_a_row_with_a_clipped_component_is_rescored_from_the_store_or_else_approximately():
    """A component beyond the codes' range leaves a residual that cannot give it back: that face alone is read
    from the store, and with the store down it keeps its approximate score (still ranked)."""
    rng = np.random.default_rng(15)
    vectors = unit(rng, 200, 64)
    spiky = np.zeros(64, np.float32)
    spiky[0], spiky[1] = 0.96, 0.28  # 0.96 is beyond 64-d's clip of 6 / sqrt(64) = 0.75
    vectors[7] = spiky
    idx = FaceIndex(64, residuals=True)
    idx.upsert(np.arange(1, 201), vectors, [()] * 200)
    asked: list[list[int]] = []

    def stored(ids):
        asked.append(ids)
        return {i: vectors[i - 1] for i in ids}

    hits = idx.search(spiky[None], DEFAULT_GALLERY, 3, exact=stored)[0]
    assert hits[0].face_id == 8 and hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert asked == [[8]]
    for hit in hits[1:]:
        assert hit.score == pytest.approx(float(vectors[hit.face_id - 1] @ spiky), abs=residual_error(64))

    def down(ids):
        raise Unavailable("Tarantool is down")

    hits = idx.search(spiky[None], DEFAULT_GALLERY, 3, exact=down)[0]
    assert hits[0].face_id == 8 and abs(hits[0].score - 1.0) > 1e-3  # the clipped approximation


def test_residuals_follow_their_rows_through_removal_overwrite_and_layout(monkeypatch):
    """Rows move when a face is removed (the last row fills the hole), overwritten, or laid out again in another
    order (rows.CompactRows.permuted): each row's residuals must move with its codes."""
    monkeypatch.setattr(rows_mod, "SEGMENT_ROWS", 128)
    rng = np.random.default_rng(16)
    vectors = unit(rng, 600, 32)
    rows = rows_mod.CompactRows(32, residuals=True)
    rows.reserve(600)
    rows.write(0, vectors)
    rows.move(599, 3)
    vectors[3] = vectors[599]
    fresh = unit(rng, 1, 32)
    rows.write(10, fresh)
    vectors[10] = fresh[0]
    order = rng.permutation(599)
    laid_out = rows.permuted(order)
    query = unit(rng, 1, 32)[0]
    for rows_now, expected in ((rows, vectors[:599]), (laid_out, vectors[order])):
        scores = rows_now.exact_scores(query, np.arange(599)[::-1].copy())
        assert scores[::-1] == pytest.approx((expected @ query).tolist(), abs=residual_error(32))
