"""The shard's search rows: every descriptor as int8 codes, scanned exhaustively by faiss.

A 512-d descriptor is 2 kB as float32 and 512 bytes as int8 codes; a scan over a million faces is bound by the
bytes it reads, so the codes make it about 4x cheaper in memory and several times faster than numpy over float32
(docs/benchmarks.md, "Compact descriptors"). faiss's `QT_8bit_direct_signed` scalar quantizer scores a float32
query against int8 rows with SIMD kernels chosen for the CPU at run time.

Codes are one global scale per dimension count (not per row), so that a code's dot product with the query ranks
rows the same way their descriptors would, give or take the quantisation error of rows and query. That error
(about 1e-3 on a score for 512-d) decides only which rows become candidates: the caller re-scores the best
candidates exactly, from the stored descriptors or, when the rows keep residuals, from those.

Residuals (optional, another byte per component) hold what each code rounded away, in 1/254 of a code step: code
and residual give the descriptor back within 1/508 of a step (about 4e-6 a component for 512-d, finer than the
float16 copy Tarantool keeps), so the best candidates are re-scored without reading Tarantool. A clipped component
has no residual (UNKNOWN_RESIDUAL): such a row's exact score must come from its stored descriptor.

Rows live in fixed-size segments, each a faiss index over its own block of codes: a growing shard adds segments
instead of copying everything into a bigger array, and a batch of queries reads each segment while it is in the
CPU's cache. Pure numpy and faiss: no gRPC, no Tarantool.
"""
from __future__ import annotations

import math
import threading

import faiss
import numpy as np

# Rows per segment: 8 MB of 512-d codes, within a server CPU's last-level cache.
SEGMENT_ROWS = 16384
# Components of a unit-length descriptor of dimension d have a spread of about 1/sqrt(d); the codes cover
# +-CLIP_SPREADS of that (components beyond are clipped, which only moves a candidate's approximate score).
CLIP_SPREADS = 6.0
# Runs of at least this many consecutive rows are scored in place; shorter ones are gathered first (a faiss call
# per run costs about as much as copying a few rows).
MIN_RUN = 8
# The faiss scanner labels each scored row (list_no << 32 | its offset in the codes scanned). A run is scanned as
# list_no = its first row, so its rows come back as first + offset; the gathered rows as list_no _GATHERED, a row
# number never reached (the lists keep rows as int32), and their offset among the gathered.
_GATHERED = (1 << 31) - 1
# A residual counts 1/RESIDUAL_STEPS of a code step; a rounded-away part is at most half a step: within +-127.
RESIDUAL_STEPS = 254
UNKNOWN_RESIDUAL = -128


def code_scale(dim: int) -> float:
    """Codes per unit of a component: component x is coded as round(x * scale), within [-127, 127]."""
    clip = min(1.0, CLIP_SPREADS / math.sqrt(dim))
    return 127.0 / clip


def encode(vectors: np.ndarray, scale: float) -> np.ndarray:
    """int8 codes, stored as faiss's direct-signed bytes (code + 128)."""
    codes = np.clip(np.rint(vectors * scale), -127, 127).astype(np.int16) + 128
    return codes.astype(np.uint8)


def decode(codes: np.ndarray, scale: float) -> np.ndarray:
    return (codes.astype(np.float32) - 128.0) / scale


def encode_residuals(vectors: np.ndarray, scale: float, codes: np.ndarray) -> np.ndarray:
    """What each of `codes` (encode's) rounded away from `vectors`, as int8 residuals; UNKNOWN_RESIDUAL where a
    component was clipped."""
    rounded_away = vectors * np.float32(scale) - (codes.astype(np.float32) - 128.0)
    residuals = np.rint(rounded_away * RESIDUAL_STEPS)
    return np.where(np.abs(rounded_away) <= 0.5, residuals, UNKNOWN_RESIDUAL).astype(np.int8)


class CompactRows:
    """Rows 0..n-1 of int8 codes (and their residuals, when kept), n chosen by the caller (rows at or past it are
    never returned by a scan).

    A row's record, as `encode` makes it and `write_codes` takes it, is its dim code bytes followed by its dim
    residuals (as bytes) when the rows keep residuals."""

    def __init__(self, dim: int, residuals: bool = False) -> None:
        self.dim = dim
        self.scale = code_scale(dim)
        self.residuals = residuals
        self._segments: list[faiss.IndexScalarQuantizer] = []
        # Per segment, a writable view of the codes faiss scans: rows are written in place.
        self._codes: list[np.ndarray] = []
        # Per segment, the residuals (int8), when kept.
        self._residuals: list[np.ndarray] = []

    @property
    def capacity(self) -> int:
        return len(self._segments) * SEGMENT_ROWS

    @property
    def record_bytes(self) -> int:
        return self.dim * (2 if self.residuals else 1)

    @property
    def nbytes(self) -> int:
        return self.capacity * self.record_bytes

    def reserve(self, rows: int) -> None:
        while self.capacity < rows:
            segment = faiss.IndexScalarQuantizer(
                self.dim, faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
            )
            segment.add_sa_codes(np.full((SEGMENT_ROWS, self.dim), 128, np.uint8))
            view = faiss.rev_swig_ptr(segment.codes.data(), SEGMENT_ROWS * self.dim)
            self._segments.append(segment)
            self._codes.append(view.reshape(SEGMENT_ROWS, self.dim))
            if self.residuals:
                self._residuals.append(np.zeros((SEGMENT_ROWS, self.dim), np.int8))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """The records of `vectors` (unit-length float32 rows)."""
        codes = encode(vectors, self.scale)
        if not self.residuals:
            return codes
        return np.concatenate([codes, encode_residuals(vectors, self.scale, codes).view(np.uint8)], axis=1)

    def write(self, first_row: int, vectors: np.ndarray) -> None:
        """Code `vectors` into rows first_row, first_row + 1, ... (room must be reserved)."""
        self.write_codes(first_row, self.encode(vectors))

    def write_codes(self, first_row: int, records: np.ndarray) -> None:
        done = 0
        while done < len(records):
            segment, offset = divmod(first_row + done, SEGMENT_ROWS)
            take = min(len(records) - done, SEGMENT_ROWS - offset)
            written = records[done : done + take]
            self._codes[segment][offset : offset + take] = written[:, : self.dim]
            if self.residuals:
                self._residuals[segment][offset : offset + take] = written[:, self.dim :].view(np.int8)
            done += take

    def codes(self, row: int) -> np.ndarray:
        segment, offset = divmod(row, SEGMENT_ROWS)
        return self._codes[segment][offset]

    def record(self, row: int) -> np.ndarray:
        segment, offset = divmod(row, SEGMENT_ROWS)
        if not self.residuals:
            return self._codes[segment][offset]
        return np.concatenate([self._codes[segment][offset], self._residuals[segment][offset].view(np.uint8)])

    def blocks(self, count: int):
        """Rows 0..count-1 as writable views, a segment at a time: its codes, then its residuals when kept (as
        bytes; a snapshot writes and reads them back in this order)."""
        for number, codes in enumerate(self._codes):
            first = number * SEGMENT_ROWS
            if first >= count:
                return
            rows = min(SEGMENT_ROWS, count - first)
            yield codes[:rows]
            if self.residuals:
                yield self._residuals[number][:rows].view(np.uint8)

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The codes of these rows (ascending), as one array (`out`, when given)."""
        if out is None:
            out = np.empty((len(rows), self.dim), np.uint8)
        return _gather(self._codes, rows, out)

    def gather_residuals(self, rows: np.ndarray) -> np.ndarray:
        """The residuals of these rows (ascending; the rows must keep residuals)."""
        return _gather(self._residuals, rows, np.empty((len(rows), self.dim), np.int8))

    def move(self, source: int, target: int) -> None:
        self.write_codes(target, self.record(source)[None])

    def permuted(self, order: np.ndarray) -> "CompactRows":
        """A copy whose row r holds this one's row order[r], for rows 0..len(order)-1."""
        copy = CompactRows(self.dim, self.residuals)
        copy.reserve(self.capacity)
        for first in range(0, len(order), SEGMENT_ROWS):
            sources = order[first : first + SEGMENT_ROWS]
            ascending = np.argsort(sources, kind="stable")
            records = np.empty((len(sources), self.record_bytes), np.uint8)
            records[ascending, : self.dim] = self.gather(sources[ascending])
            if self.residuals:
                records[ascending, self.dim :] = self.gather_residuals(sources[ascending]).view(np.uint8)
            copy.write_codes(first, records)
        return copy

    def exact_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The query's score against each of these rows' descriptors as codes and residuals give them back (the
        rows must keep residuals); NaN for a row with a clipped component, whose score they cannot give."""
        scores = np.full(len(rows), np.nan, np.float32)
        if not len(rows):
            return scores
        ascending = np.argsort(rows, kind="stable")
        sorted_rows = rows[ascending]
        residuals = self.gather_residuals(sorted_rows)
        values = self.gather(sorted_rows).astype(np.float32)
        values -= np.float32(128.0)
        values += residuals.astype(np.float32) * np.float32(1.0 / RESIDUAL_STEPS)
        exact = (values @ query) / np.float32(self.scale)
        known = ~(residuals == UNKNOWN_RESIDUAL).any(axis=1)
        scores[ascending[known]] = exact[known]
        return scores

    def approximate(self, row: int) -> np.ndarray:
        return decode(self.codes(row), self.scale)

    def scan(self, queries: np.ndarray, live: int, pool: int, members: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The `pool` best rows below `live` per query by approximate score: (scores, rows), each Q x pool, best
        first; -1 rows (score -inf) where fewer rows qualify.

        `members`: a little-endian bitmap over rows (bit r of byte r // 8) of the rows to consider; None for all.
        """
        # One thread per scan: the shard runs scans on its own search workers, and OpenMP threads would only
        # compete with them (and with the other shard servers on the host) for the same cores, spinning while
        # they wait. OpenMP's thread count is per calling thread, hence here rather than once at import.
        faiss.omp_set_num_threads(1)
        count = len(queries)
        queries, query_scale = _integral(queries)
        found_scores, found_rows = [], []
        for number, segment in enumerate(self._segments):
            first = number * SEGMENT_ROWS
            if first >= live:
                break
            in_segment = min(SEGMENT_ROWS, live - first)
            selector = None
            if members is not None:
                bits = members[first // 8 : (first + in_segment + 7) // 8]
                if not bits.any():
                    continue  # a small gallery skips most segments without reading them
                # faiss's n is the bitmap's length in bytes, so rows past it (the unused end of the last segment)
                # are never members, whatever memory follows the bitmap.
                selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
            elif in_segment < SEGMENT_ROWS:
                selector = faiss.IDSelectorRange(0, in_segment)
            params = None if selector is None else faiss.SearchParameters(sel=selector)
            scores, rows = segment.search(queries, min(pool, in_segment), params=params)
            rows = np.where(rows >= 0, rows + first, -1)
            found_scores.append(scores)
            found_rows.append(rows)
        if not found_scores:
            return np.full((count, 0), -np.inf, np.float32), np.full((count, 0), -1, np.int64)
        scores = np.concatenate(found_scores, axis=1) / (np.float32(self.scale) * query_scale)
        rows = np.concatenate(found_rows, axis=1)
        scores[rows < 0] = -np.inf
        if scores.shape[1] > pool:
            best = np.argpartition(-scores, pool - 1, axis=1)[:, :pool]
            scores = np.take_along_axis(scores, best, axis=1)
            rows = np.take_along_axis(rows, best, axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def score_rows(self, query: np.ndarray, rows: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
        """The `pool` best of the given rows for one query by approximate score: (scores, rows), best first.

        Runs of consecutive rows (a fast index's lists, once the rows are laid out in list order) are scored where
        they lie; the other rows are gathered into one block first. Both go through the faiss kernel of `scan`, so
        the scores of both can be merged.
        """
        if not len(rows):
            return np.empty(0, np.float32), np.empty(0, np.int64)
        # Stable: a merge of the sorted runs that lists are, rather than a sort from scratch.
        rows = np.sort(rows.astype(np.int64), kind="stable")
        starts, lengths = runs(rows)
        long = lengths >= MIN_RUN
        scorer = _scorer(self.dim)
        scaled, query_scale = _integral(query[None])
        scorer.start(scaled[0], pool)
        for first, length in zip(rows[starts[long]].tolist(), lengths[long].tolist()):
            segment, offset = divmod(first, SEGMENT_ROWS)
            scorer.scan(self._codes[segment][offset:], length, first)
        scattered = rows[np.repeat(~long, lengths)]
        if len(scattered):
            codes = scorer.block(len(scattered))
            self.gather(scattered, out=codes)
            scorer.scan(codes, len(scattered), _GATHERED)
        scores, labels = scorer.best()
        found = (labels >> 32) + (labels & 0xFFFFFFFF)
        gathered = labels >> 32 == _GATHERED
        found[gathered] = scattered[labels[gathered] & 0xFFFFFFFF]
        return scores / (np.float32(self.scale) * query_scale[0, 0]), found


def _gather(segments: list[np.ndarray], rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Rows (ascending) of per-segment arrays, into `out`."""
    bounds = np.searchsorted(rows, np.arange(len(segments) + 1) * SEGMENT_ROWS)
    for number, (segment, start, end) in enumerate(zip(segments, bounds[:-1], bounds[1:])):
        if end > start:
            # mode="clip": with the default "raise", numpy gathers into a temporary and copies it to `out` (a
            # megabyte-sized allocation per call); the rows were just split by segment, so none is clipped.
            np.take(segment, rows[start:end] - number * SEGMENT_ROWS, axis=0, out=out[start:end], mode="clip")
    return out


def runs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of consecutive rows within one segment in `rows`: (where each starts in `rows`, its length)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    breaks = np.flatnonzero((np.diff(rows) != 1) | (rows[1:] % SEGMENT_ROWS == 0)) + 1
    starts = np.concatenate([[0], breaks])
    return starts, np.diff(np.append(starts, len(rows)))


def scattered_count(rows: np.ndarray) -> int:
    """How many of `rows` are in runs too short to be scored in place."""
    _, lengths = runs(rows)
    return int(lengths[lengths < MIN_RUN].sum())


class _Scorer:
    """One thread's faiss scanner over int8 codes, its result heap, and a buffer for gathered rows.

    The buffer is kept between queries so that it keeps its capacity: a new one per query allocated megabytes
    each time, under the servers' fixed mmap threshold (launch.ALLOCATOR_ENV) an mmap, a page fault per 4 kB and
    an munmap, which made a fast-index query's scoring 3x slower."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._quantizer = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit_direct_signed)
        self._scanner = self._quantizer.select_InvertedListScanner(faiss.METRIC_INNER_PRODUCT, None, True, None, False)
        self._buffer = np.empty(0, np.uint8)
        self._query = np.empty(0, np.float32)
        self._scores = np.empty(0, np.float32)
        self._labels = np.empty(0, np.int64)
        self._heap: tuple = ()

    def block(self, rows: int) -> np.ndarray:
        if len(self._buffer) < rows * self.dim:
            self._buffer = np.empty(rows * self.dim, np.uint8)
        return self._buffer[: rows * self.dim].reshape(rows, self.dim)

    def start(self, query: np.ndarray, pool: int) -> None:
        self._query = query  # the scanner keeps a pointer to it
        self._scanner.set_query(faiss.swig_ptr(query))
        # An inner-product heap (faiss's CMin) of `pool` empty slots: every score replaces one.
        self._scores = np.full(pool, -np.finfo(np.float32).max, np.float32)
        self._labels = np.full(pool, -1, np.int64)
        # Made once per query: a search scans a few dozen runs into the same heap.
        self._heap = (faiss.swig_ptr(self._scores), faiss.swig_ptr(self._labels), pool)

    def scan(self, codes: np.ndarray, rows: int, list_no: int) -> None:
        self._scanner.list_no = list_no
        self._scanner.scan_codes(rows, faiss.swig_ptr(codes), None, *self._heap)

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        filled = self._labels >= 0
        scores, labels = self._scores[filled], self._labels[filled]
        order = np.argsort(-scores, kind="stable")
        return scores[order], labels[order]


_scorers = threading.local()


def _scorer(dim: int) -> _Scorer:
    by_dim = getattr(_scorers, "by_dim", None)
    if by_dim is None:
        by_dim = _scorers.by_dim = {}
    scorer = by_dim.get(dim)
    if scorer is None:
        scorer = by_dim[dim] = _Scorer(dim)
    return scorer


def _integral(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """faiss scores int8 rows with integer SIMD when the dimension allows, rounding the query to integers first:
    each query is scaled to fill the int8 range (the scale is returned, to take the scores back)."""
    peaks = np.abs(queries).max(axis=1, keepdims=True)
    query_scale = np.float32(127.0) / np.where(peaks > 0, peaks, np.float32(1.0))
    return np.ascontiguousarray(np.rint(queries * query_scale), dtype=np.float32), query_scale
