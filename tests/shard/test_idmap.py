"""The id -> row map against a dict doing the same adds, moves and discards, in and out of id order."""
from __future__ import annotations

import numpy as np

from findface_grpc.shard.idmap import IdRows


def test_random_operations_agree_with_a_dict():
    rng = np.random.default_rng(40)
    table, model = IdRows(), {}
    next_row = 0
    for step in range(300):
        action = rng.random()
        if action < 0.5:
            # Mostly ascending new ids, as the gateway hands them out; sometimes anywhere.
            base = (max(model) + 1) if model and rng.random() < 0.8 else int(rng.integers(1, 10**6))
            fresh = [i for i in dict.fromkeys(int(x) for x in base + rng.permutation(50)[: rng.integers(1, 50)])
                     if i not in model]
            table.add(np.array(fresh, np.uint64), np.arange(next_row, next_row + len(fresh)))
            model.update(zip(fresh, range(next_row, next_row + len(fresh))))
            next_row += len(fresh)
        elif action < 0.8 and model:
            gone = [int(i) for i in rng.choice(list(model), min(len(model), 7), replace=False)] + [10**9]
            table.discard(gone)
            for i in gone:
                model.pop(i, None)
        elif model:
            face_id = int(rng.choice(list(model)))
            table.move(face_id, next_row)
            model[face_id] = next_row
            next_row += 1
        probe = np.array(list(model)[:20] + [0, 10**9 + 1], np.uint64)
        assert table.rows_of(probe).tolist() == [model.get(int(i), -1) for i in probe]
        assert len(table) == len(model)
    everything = np.array(list(model), np.uint64)
    assert table.rows_of(everything).tolist() == list(model.values())


def test_built_from_rows_finds_every_row():
    ids = np.random.default_rng(41).permutation(np.arange(1, 5001, dtype=np.uint64) * 7)
    table = IdRows.from_rows(ids)
    assert table.rows_of(ids).tolist() == list(range(5000))
    assert table.get(3) is None and table.get(int(ids[17])) == 17
