"""ICC profiles for the colour tests, written byte by byte after the ICC specification (v2): Display P3 and Adobe
RGB as phones and cameras embed them (matrix/TRC profiles), and a small CMYK press profile (a lookup table), with
the colour arithmetic that says what their pixels are in sRGB, computed here independently of littlecms.
"""
from __future__ import annotations

import struct

import numpy as np

D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
# Chromaticities of the red, green and blue primaries; every space here has D65 white.
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE_PRIMARIES = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries) -> np.ndarray:
    """The matrix from linear RGB to XYZ (D65, Y of white 1)."""
    columns = np.stack([xyz(p) for p in primaries], axis=1)
    return columns * np.linalg.solve(columns, xyz(D65))


def to_d50(matrix: np.ndarray) -> np.ndarray:
    """An RGB -> XYZ matrix adapted from D65 to the ICC connection space's D50 (Bradford), as profiles store it."""
    cone = BRADFORD @ xyz(D65), BRADFORD @ D50_XYZ
    adapt = np.linalg.inv(BRADFORD) @ np.diag(cone[1] / cone[0]) @ BRADFORD
    return adapt @ matrix


def srgb_decode(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64) / 255
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    v = np.clip(linear, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055) * 255


def gamma_decode(v: np.ndarray, gamma: float) -> np.ndarray:
    return (np.asarray(v, np.float64) / 255) ** gamma


def convert(pixels: np.ndarray, primaries, decode) -> np.ndarray:
    """8-bit pixels in a space of these primaries and transfer function -> sRGB, as floats 0-255."""
    linear = decode(pixels) @ (np.linalg.inv(rgb_to_xyz(SRGB_PRIMARIES)) @ rgb_to_xyz(primaries)).T
    return srgb_encode(linear)


# ---- writing profiles ----

def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(v) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 4 + b"\0" * 4 + b"\0" * 3 + b"\0" * 67


def _profile(device_class: bytes, space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    header_size, table = 128, 4 + 12 * len(tags)
    offset, entries, data = header_size + table, b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        entries += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = header_size + table + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + device_class + space + b"XYZ "
              + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(_s15(c) for c in D50_XYZ) + b"\0" * 4 + b"\0" * 16)
    header += b"\0" * (header_size - len(header))
    return header + struct.pack(">I", len(tags)) + entries + data


def matrix_profile(name: str, primaries, gamma: float | None = None) -> bytes:
    """An RGB display profile: these primaries, D65 white, and sRGB's transfer curve (Display P3's) or a pure gamma
    (Adobe RGB's 563/256)."""
    matrix = to_d50(rgb_to_xyz(primaries))
    if gamma is None:  # parametric curve 3: sRGB's piecewise curve
        params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
        curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in params)
    else:
        curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    return _profile(b"mntr", b"RGB ", [
        (b"desc", _desc(name)), (b"wtpt", _xyz_tag(D50_XYZ)),
        (b"rXYZ", _xyz_tag(matrix[:, 0])), (b"gXYZ", _xyz_tag(matrix[:, 1])), (b"bXYZ", _xyz_tag(matrix[:, 2])),
        (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
    ])


def grey(gamma: float) -> bytes:
    """A grey display profile of this gamma (a scanner's or a camera's monochrome mode)."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    return _profile(b"mntr", b"GRAY", [(b"desc", _desc(f"Grey gamma {gamma:g}")), (b"wtpt", _xyz_tag(D50_XYZ)),
                                       (b"kTRC", curve)])


def display_p3() -> bytes:
    return matrix_profile("Display P3", P3_PRIMARIES)


def adobe_rgb() -> bytes:
    return matrix_profile("Adobe RGB (1998)", ADOBE_PRIMARIES, gamma=563 / 256)


# A press's inks as they look on screen (sRGB), on white paper; overprints multiply their transmittances, and any
# black ink gives black.
INKS = {"C": (0, 158, 224), "M": (226, 0, 122), "Y": (255, 237, 0)}


def press_colour(c: int, m: int, y: int, k: int) -> np.ndarray:
    """What a corner of the CMYK cube (each ink 0 or 1) looks like, in sRGB 0-255, by the press profile."""
    if k:
        return np.zeros(3)
    linear = np.ones(3)
    for ink, on in zip("CMY", (c, m, y)):
        if on:
            linear = linear * srgb_decode(INKS[ink])
    return srgb_encode(linear)


def cmyk_press() -> bytes:
    """A CMYK output profile whose device-to-PCS table (A2B0, lut16 with a 2-point grid) maps each corner of the
    ink cube to press_colour's colour, in D50 XYZ."""
    to_xyz = to_d50(rgb_to_xyz(SRGB_PRIMARIES))
    grid = []
    for c in (0, 1):  # the first channel varies slowest
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    value = to_xyz @ srgb_decode(press_colour(c, m, y, k))
                    grid.extend(min(65535, round(v * 32768)) for v in value)  # 16-bit XYZ: 1.0 is 0x8000
    identity = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    lut = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in identity) + struct.pack(">HH", 2, 2)
           + struct.pack(">8H", *[0, 65535] * 4) + struct.pack(f">{len(grid)}H", *grid)
           + struct.pack(">6H", *[0, 65535] * 3))
    return _profile(b"prtr", b"CMYK", [(b"desc", _desc("Test press")), (b"wtpt", _xyz_tag(D50_XYZ)),
                                       (b"A2B0", lut)])
