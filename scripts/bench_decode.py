"""Decoding a 12-megapixel phone photo for the detector: what each format costs (the photo-formats issue).

Usage: python scripts/bench_decode.py [--reps 15] [--faces ../shared/faces]

A labelled photo (the biggest of shared/faces, a 14-megapixel camera JPEG) cropped to 4032x3024, an iPhone's
12 megapixels, is encoded as a phone would send it (JPEG quality 90; HEIC in 512-px tiles, as iPhones write it,
which libheif decodes in parallel; AVIF; and PNG for reference) and decoded by
findface_grpc.extractor.imaging.decode, median of --reps, the forms interleaved so that load from elsewhere falls
on all alike:
- JPEG decoded whole (the baseline: what every photo would cost without drafting);
- JPEG drafted as the pipeline asks for it (draft_long_side 512: libjpeg's DCT scaling to 1/4 here);
- HEIC and AVIF, decoded whole (no format-level shortcut), and PNG;
- the JPEG with an embedded colour profile, whole and drafted: sRGB's (found to be sRGB once, then nothing to
  do) and Display P3's (its pixels converted to sRGB by littlecms: the colour-profile issue).
Prints ms and the ratio to the whole-JPEG baseline of the same run.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, ImageCms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from findface_grpc.extractor import imaging  # noqa: E402  (also registers the HEIF opener)
from findface_grpc.extractor.pipeline import Pipeline  # noqa: E402
from tests.extractor import icc  # noqa: E402

SIZE = (4032, 3024)
LIMITS = {"max_bytes": 100 * 10**6, "max_pixels": 50 * 10**6}


def phone_photo(faces: Path) -> Image.Image:
    biggest = max((faces / "deepface").glob("*.jpg"), key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
    photo = Image.open(biggest).convert("RGB")
    if photo.size[1] > photo.size[0]:
        photo = photo.transpose(Image.Transpose.ROTATE_90)
    scale = max(SIZE[0] / photo.size[0], SIZE[1] / photo.size[1])
    if scale > 1:
        photo = photo.resize((round(photo.size[0] * scale), round(photo.size[1] * scale)), Image.Resampling.LANCZOS)
    left, top = (photo.size[0] - SIZE[0]) // 2, (photo.size[1] - SIZE[1]) // 2
    return photo.crop((left, top, left + SIZE[0], top + SIZE[1]))


def encoded(photo: Image.Image) -> dict[str, bytes]:
    out = {}
    for name, fmt, options in [("JPEG", "JPEG", {"quality": 90}), ("HEIC", "HEIF", {"quality": 80, "tile_size": 512}),
                               ("AVIF", "AVIF", {"quality": 80, "speed": 8}), ("PNG", "PNG", {"compress_level": 1})]:
        buf = io.BytesIO()
        photo.save(buf, format=fmt, **options)
        out[name] = buf.getvalue()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(icc.display_p3()))
    for name, stored, profile in [("JPEG sRGB", photo, srgb.tobytes()),
                                  ("JPEG P3", ImageCms.profileToProfile(photo, srgb, p3, outputMode="RGB"),
                                   icc.display_p3())]:
        buf = io.BytesIO()
        stored.save(buf, format="JPEG", quality=90, icc_profile=profile)
        out[name] = buf.getvalue()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/faces")
    args = parser.parse_args()
    data = encoded(phone_photo(args.faces))
    cases = {
        "JPEG, whole (baseline)": (data["JPEG"], 0),
        f"JPEG, drafted (long side >= {Pipeline.DRAFT_LONG_SIDE})": (data["JPEG"], Pipeline.DRAFT_LONG_SIDE),
        "HEIC, whole": (data["HEIC"], 0),
        "AVIF, whole": (data["AVIF"], 0),
        "PNG, whole": (data["PNG"], 0),
        "JPEG with an sRGB profile, whole": (data["JPEG sRGB"], 0),
        "JPEG with a Display P3 profile, whole": (data["JPEG P3"], 0),
        "JPEG with a Display P3 profile, drafted": (data["JPEG P3"], Pipeline.DRAFT_LONG_SIDE),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    shapes = {}
    for _ in range(args.reps):
        for name, (blob, draft) in cases.items():
            started = time.perf_counter()
            decoded = imaging.decode(blob, LIMITS["max_bytes"], LIMITS["max_pixels"], draft)
            times[name].append(time.perf_counter() - started)
            shapes[name] = decoded.image.shape[1::-1]
    base = statistics.median(times["JPEG, whole (baseline)"])
    print(f"{SIZE[0]}x{SIZE[1]} photo, median of {args.reps}")
    print(f"{'form':42} {'MB':>6} {'decoded to':>11} {'ms':>8} {'x baseline':>11}")
    for name, (blob, _) in cases.items():
        median = statistics.median(times[name])
        w, h = shapes[name]
        print(f"{name:42} {len(blob) / 1e6:6.2f} {f'{w}x{h}':>11} {median * 1e3:8.1f} {median / base:11.3f}")


if __name__ == "__main__":
    main()
