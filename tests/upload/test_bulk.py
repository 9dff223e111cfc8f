"""findface-enroll: a folder tree enrolled over gRPC, run twice (idempotent), resumed after a cut-short state file;
the faces it found but left out (too small, under --min-quality) counted with their reasons."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import STRICT_MIN_FACE_SIZE
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


def state_lines(folder) -> dict[str, dict]:
    """The state file's last record of each photo."""
    lines = (folder / ".findface-enroll.jsonl").read_text().splitlines()
    return {entry["file"]: entry for entry in map(json.loads, lines)}


def test_faces_left_out_are_counted_with_their_reasons(strict_cluster, collage, tmp_path):
    stub = strict_cluster.stub
    mid = collage(160, 45)  # the smaller face big enough to use, but poorer than the bigger one
    big, small = sorted(stub.Detect(gateway_pb2.FaceDetectRequest(image=common_pb2.ImageSource(content=mid)),
                                    timeout=60).faces, key=lambda f: f.bbox.x1 - f.bbox.x2)
    assert big.quality - small.quality > 0.1, (big.quality, small.quality)
    between = (big.quality + small.quality) / 2
    tree = tmp_path / "photos"
    (tree / "left").mkdir(parents=True)
    (tree / "left" / "both.jpg").write_bytes(collage(160, 26))
    (tree / "left" / "mid.jpg").write_bytes(mid)
    (tree / "left" / "tiny.jpg").write_bytes(collage(26))

    run = enroll_cli(strict_cluster, tree, "--multi-face", "all", "--min-quality", f"{between:.4f}")
    assert run.returncode == 1, run.stderr
    assert "3 photos: 2 enrolled (2 faces), 0 skipped (enrolled before), 1 failed" in run.stdout, run.stdout
    assert f"2 faces left out: 1 too small, 1 under min_quality (per photo in {tree}/" in run.stdout, run.stdout
    assert re.search(rf"failed  left/tiny\.jpg: INVALID_ARGUMENT: .*\d+x\d+ px, under the minimum of "
                     rf"{STRICT_MIN_FACE_SIZE} px", run.stdout), run.stdout
    state = state_lines(tree)
    (too_small,) = state["left/both.jpg"]["skipped"]
    assert too_small["reason"] == "too_small" and f"minimum of {STRICT_MIN_FACE_SIZE} px" in too_small["message"]
    (poor,) = state["left/mid.jpg"]["skipped"]
    assert poor["reason"] == "low_quality" and "under min_quality" in poor["message"]
    assert state["left/tiny.jpg"]["status"] == "failed" and "skipped" not in state["left/tiny.jpg"]
    assert count(strict_cluster, "left") == 2


def test_min_quality_leaves_out_a_normal_face(strict_cluster, photos, tmp_path):
    tree = tmp_path / "photos"
    (tree / "picky").mkdir(parents=True)
    (tree / "picky" / "img2.jpg").write_bytes(photos["deepface/img2.jpg"][1])
    run = enroll_cli(strict_cluster, tree, "--min-quality", "0.99")
    assert run.returncode == 1, run.stderr
    assert "1 photos: 0 enrolled (0 faces), 0 skipped (enrolled before), 1 failed" in run.stdout, run.stdout
    assert "failed  picky/img2.jpg: INVALID_ARGUMENT: " in run.stdout and "under min_quality 0.99" in run.stdout
    assert "left out" not in run.stdout  # refused as a whole, not enrolled without it
    # Without the limit the same photo is enrolled, its face kept.
    again = enroll_cli(strict_cluster, tree)
    assert again.returncode == 0 and "1 photos: 1 enrolled (1 faces)" in again.stdout, again.stdout
    assert state_lines(tree)["picky/img2.jpg"]["skipped"] == []
    for bad in ("1.5", "-0.1", "nan"):
        refused = enroll_cli(strict_cluster, tree, "--min-quality", bad)
        assert refused.returncode == 2 and "--min-quality must be in [0, 1]" in refused.stderr
