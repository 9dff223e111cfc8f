"""findface-enroll: a folder tree enrolled over gRPC, run twice (idempotent), resumed after a cut-short state file."""
from __future__ import annotations

import os
import subprocess
import sys

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.helpers import ROOT


def enroll_cli(cluster, folder, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "findface_grpc.bulk", str(folder), "--gateway", cluster.gateway_address,
         "--concurrency", "4", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, "FINDFACE_TOKEN": cluster.token},
    )


def count(cluster, gallery: str) -> int:
    return len(cluster.stub.ListFaces(gateway_pb2.ListFacesRequest(gallery=gallery, limit=1000), timeout=10).faces)


def test_folder_tree_enrolled_once_and_resumable(cluster, photos, tmp_path):
    by_person: dict[str, list[str]] = {}
    for name, (identity, _) in sorted(photos.items()):
        by_person.setdefault(identity, []).append(name)
    people = sorted(by_person)
    tree = tmp_path / "photos"
    for folder, chosen in (("alpha", people[0:3]), ("beta", people[3:5])):
        (tree / folder).mkdir(parents=True)
        for person in chosen:
            (tree / folder / f"{person}.jpg").write_bytes(photos[by_person[person][0]][1])
    (tree / "top.jpg").write_bytes(photos[by_person[people[5]][0]][1])
    (tree / "alpha" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (tree / "alpha" / "notes.txt").write_text("not a photo: ignored")
    (tree / "bad.name").mkdir()
    (tree / "bad.name" / "x.jpg").write_bytes(photos[by_person[people[6]][0]][1])

    first = enroll_cli(cluster, tree)
    assert first.returncode == 1, first.stderr
    assert "8 photos: 6 enrolled (6 faces), 0 skipped (enrolled before), 2 failed" in first.stdout, first.stdout
    assert "failed  alpha/broken.jpg: INVALID_ARGUMENT" in first.stdout
    assert "failed  bad.name/x.jpg: gallery name 'bad.name'" in first.stdout
    assert "enrolled 6" in first.stderr  # the progress line
    assert (count(cluster, "alpha"), count(cluster, "beta")) == (3, 2)
    query = photos[by_person[people[1]][1]][1]
    reply = cluster.stub.Identify(gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=query),
                                                              gallery="alpha"), timeout=60)
    assert reply.results[0].matches[0].face.meta == people[1]

    # Run again after a crash that cut the state file's last line short: nothing enrolled twice.
    with open(tree / ".findface-enroll.jsonl", "a") as state:
        state.write('{"file": "alpha/per')
    second = enroll_cli(cluster, tree)
    assert "8 photos: 0 enrolled (0 faces), 6 skipped (enrolled before), 2 failed" in second.stdout, second.stdout
    assert (count(cluster, "alpha"), count(cluster, "beta")) == (3, 2)

    # A photo added since, and one changed: only those two are enrolled.
    (tree / "beta" / "new.jpg").write_bytes(photos[by_person[people[7]][0]][1])
    (tree / "beta" / f"{people[3]}.jpg").write_bytes(photos[by_person[people[3]][1]][1])
    third = enroll_cli(cluster, tree, "--no-create-galleries")
    assert "9 photos: 2 enrolled (2 faces), 5 skipped (enrolled before), 2 failed" in third.stdout, third.stdout
    assert count(cluster, "beta") == 4
