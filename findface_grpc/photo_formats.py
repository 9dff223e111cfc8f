"""The photo formats the cluster takes, one list for every door: the extractor decodes them, the photo store keeps
originals under their extension, and the drop folder and findface-enroll pick files by it.

This module only names formats and tells them apart by their first bytes; decoding is
findface_grpc.extractor.imaging's. It imports nothing heavy, so that the photo store and the CLI can use it.
"""
from __future__ import annotations

# Pillow's format name -> file extensions; the first is the one a stored original gets. HEIF is HEIC (iPhones) and
# any other HEIF; MPO (phones' multi-picture JPEGs) opens as JPEG.
ACCEPTED = {
    "JPEG": ("jpg", "jpeg"),
    "PNG": ("png",),
    "WEBP": ("webp",),
    "GIF": ("gif",),
    "HEIF": ("heic", "heif"),
    "AVIF": ("avif",),
}
EXTENSIONS = tuple(ext for exts in ACCEPTED.values() for ext in exts)
STORED_EXTENSIONS = tuple(exts[0] for exts in ACCEPTED.values())
MEDIA_TYPES = {
    "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif", "heic": "image/heic",
    "avif": "image/avif",
}
NAMES = "JPEG, PNG, WEBP, GIF, HEIC or AVIF"

# ISO base media file brands (the ftyp box): AV1 images, HEVC images (HEIC), and HEIF images of any codec.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEVC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_GENERIC_BRANDS = {b"mif1", b"msf1", b"mif2"}
# Formats people send that are not taken, named so that the refusal says what was sent.
_OTHERS = (
    (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"BM", "BMP"), (b"%PDF", "PDF"), (b"\0\0\0\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"\xff\x0a", "JPEG XL"), (b"\0\0\0\x0cJXL ", "JPEG XL"), (b"8BPS", "PSD"),
    (b"\0\0\1\0", "ICO"),
)


def sniff(data: bytes) -> str | None:
    """The format `data` holds by its magic numbers: a key of ACCEPTED, the name of a common image format that is
    not taken (TIFF, BMP, SVG, ...), or None. Only the first bytes are read; whether the rest decodes is another
    matter."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[4:8] == b"ftyp":
        return _iso_brand(data)
    for magic, name in _OTHERS:
        if data.startswith(magic):
            return name
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def _iso_brand(data: bytes) -> str | None:
    """HEIF or AVIF by the ftyp box's major brand, then by its compatible brands (a "mif1" file may hold either)."""
    box_size = int.from_bytes(data[:4], "big")
    major = data[8:12]
    compatible = {data[i:i + 4] for i in range(16, min(box_size, len(data), 256) - 3, 4)}
    if major in _AVIF_BRANDS or (major not in _HEVC_BRANDS and compatible & _AVIF_BRANDS):
        return "AVIF"
    if major in _HEVC_BRANDS | _GENERIC_BRANDS or compatible & _HEVC_BRANDS:
        return "HEIF"
    return None


def extension_for(data: bytes) -> str:
    """The extension a stored original gets; jpg when its bytes are none of the accepted formats."""
    fmt = sniff(data)
    return ACCEPTED[fmt][0] if fmt in ACCEPTED else "jpg"
