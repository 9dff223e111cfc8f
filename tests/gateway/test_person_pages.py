"""ListPersons's pages read by windows of person ids (persons.PersonStore, text_keys.py): the same persons, counts
and newest faces as grouping every face would give; the bounds pure, the store against SecantusDB."""
from __future__ import annotations

import random
import uuid

import numpy as np
import pytest

from findface_grpc.gateway import text_keys
from findface_grpc.gateway.domain import Descriptor, NewFace
from findface_grpc.gateway.face_docs import ACTIVE
from findface_grpc.gateway.metadata import MetadataStore
from findface_grpc.gateway.persons import PersonStore

ODD = ["\0", "\x01", "a", "b", "z", "0", "9", "~", "\x7f", "é", "€", "😀", "\uffff", "A"]


def test_every_text_lies_between_its_key_and_the_next():
    rng = random.Random(3)
    for _ in range(20_000):
        text = "".join(rng.choice(ODD) for _ in range(rng.randint(0, 11)))
        key = text_keys.key_of(text)
        assert text_keys.text_of(key) <= text, repr(text)
        if key + 1 < text_keys.END:
            assert text < text_keys.text_of(key + 1), repr(text)


def test_the_texts_of_keys_increase_with_them():
    rng = random.Random(4)
    keys = sorted({rng.randrange(text_keys.END) for _ in range(20_000)} | {0, 1, 127, 128, text_keys.END - 1})
    texts = [text_keys.text_of(k) for k in keys]
    assert all(a < b for a, b in zip(texts, texts[1:]))
    assert all(t.isascii() for t in texts)


@pytest.fixture(scope="module")
def people(mongo, loop):
    """Faces of 60 persons (uuid hex ids as cameras give them, names, non-ASCII, control characters, one with
    only deleted faces) and faces with no person."""
    store = MetadataStore(mongo, "person_pages", timeout_s=5)
    store.client.drop_database(store.db.name)
    loop.run(store.ensure_schema())
    rng = random.Random(5)
    ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(40)]
    # "alj": where the second window after "ali" starts (FIRST_WIDTH on), its bound included.
    ids += ["alice", "alice2", "alj", "bob", "Zed", "élodie", "😀face", "\x01ctl", "a\0b", "~", "\x7f", "z" * 60]
    ids += [f"cam-{i:03d}" for i in range(9)]
    faces = [(pid, ACTIVE) for pid in ids for _ in range(rng.randint(1, 4))]
    faces += [("", ACTIVE)] * 5 + [("gone", "deleting")] * 2
    rng.shuffle(faces)
    first = loop.run(store.allocate_ids(len(faces)))
    descriptor = Descriptor("m", np.zeros(4, np.float32))
    loop.run(store.insert_faces(range(first, first + len(faces)),
                                [NewFace(descriptor, ("default",), person_id=pid) for pid, _ in faces]))
    gone = [first + i for i, (_, state) in enumerate(faces) if state != ACTIVE]
    loop.run(store.mark_deleting(gone))
    model: dict[str, list[int]] = {}
    for i, (pid, state) in enumerate(faces):
        if pid and state == ACTIVE:
            model.setdefault(pid, []).append(first + i)
    yield store, model
    store.client.drop_database(store.db.name)
    store.close()


@pytest.mark.parametrize("limit", [1, 7, 25, 100])
def test_pages_of_persons_are_those_of_grouping_every_face(people, loop, limit):
    store, model = people
    persons = PersonStore(store)
    seen, after = [], ""
    while True:
        page = loop.run(persons.page(after, limit + 1))
        want = sorted(p for p in model if p > after)[:limit + 1]
        assert [p.id for p in page] == want
        for person in page:
            assert (person.face_count, person.face.id) == (len(model[person.id]), max(model[person.id]))
        seen.extend(p.id for p in page[:limit])
        if len(page) <= limit:
            break
        after = page[limit - 1].id
    assert seen == sorted(model)


def test_a_page_after_any_text(people, loop):
    store, model = people
    persons = PersonStore(store)
    for after in ["", "a", "ali", "alice", "alice\0", "zz", "é", "\uffff", "😀", "😀face", "\U0010ffff"]:
        assert [p.id for p in loop.run(persons.page(after, 3))] == sorted(p for p in model if p > after)[:3], after


def test_the_windows_are_index_range_scans(people):
    store, _ = people
    plan = store.faces.find({"person_id": {"$gte": "ab", "$lt": "ac"}}).explain()["queryPlanner"]["winningPlan"]
    assert plan.get("inputStage", {}).get("indexName") == "person_id_1", plan
