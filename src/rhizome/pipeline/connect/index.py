"""Brute-force nearest neighbours over normalised float32 vectors (numpy only).

A search is a matrix multiply plus ``argpartition`` per block of rows, with a running
top-k, so the score matrix stays under ``block_bytes`` (64 MiB by default) whatever the
library size, and the vectors are read once per (up to 1,024) queries. Measured in
bench/pipeline/README-connect.md. Past ~1M chunks an ANN index (HNSW via hnswlib or
faiss, or pgvector) is the better tool; this class is the exact baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Neighbor", "VectorIndex", "normalize_rows"]

Neighbor = tuple[str, str, float]
"""(chunk_id, document_id, cosine score)"""

FloatMatrix = npt.NDArray[np.float32]
_QUERY_BLOCK = 1024
_GATHER_EXCLUDED = 4
"""A search that excludes at least 1/4 of the rows scores a copy of the others only."""


def normalize_rows(matrix: npt.ArrayLike) -> FloatMatrix:
    """float32 copy with unit-length rows (zero rows stay zero)."""
    m = np.array(matrix, dtype=np.float32, copy=True, ndmin=2)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.divide(m, norms, out=m, where=norms > 0)
    return m


def _top_above(
    scores: FloatMatrix, k: int, floor: float
) -> tuple[FloatMatrix, npt.NDArray[np.int64]] | None:
    """The ``k`` best columns per row among those scoring at least ``floor``, as
    ``(scores, columns)`` of width ``k`` padded with -inf; None when too many pass the
    floor for this to beat a partial sort of every row. With a floor (the engines search
    down to cosine 0.3) most of a large library is below it, so sorting the few that pass
    costs a fraction of an ``argpartition`` over every score."""
    passed = scores >= floor
    count = int(np.count_nonzero(passed))
    if count > scores.size // 32:
        return None
    rows, cols = np.nonzero(passed)
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))  # per row: best first, ties by column
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.searchsorted(rows, np.arange(scores.shape[0]))
    rank = np.arange(rows.size) - first[rows]
    keep = rank < k
    out_scores = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    out_cols = np.zeros((scores.shape[0], k), dtype=np.int64)
    out_scores[rows[keep], rank[keep]] = values[keep]
    out_cols[rows[keep], rank[keep]] = cols[keep]
    return out_scores, out_cols


class VectorIndex:
    """Exact cosine search over normalised vectors, grouped by document."""

    def __init__(self, dim: int | None = None, *, block_bytes: int = 64 << 20) -> None:
        self._dim = dim
        self._block_bytes = block_bytes
        self._matrix: FloatMatrix = np.zeros((0, dim or 0), dtype=np.float32)
        self._codes: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self._n = 0
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._doc_code: dict[str, int] = {}
        self._doc_names: list[str] = []
        self._doc_sum: dict[int, npt.NDArray[np.float64]] = {}
        self._doc_count: dict[int, int] = {}

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls, ids: Sequence[str], document_ids: Sequence[str], matrix: npt.ArrayLike
    ) -> VectorIndex:
        m = np.asarray(matrix, dtype=np.float32)
        index = cls(m.shape[1] if m.ndim == 2 else None)
        index.add(ids, document_ids, m)
        return index

    @property
    def dim(self) -> int | None:
        return self._dim

    def __len__(self) -> int:
        return self._n

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._row_of

    @property
    def nbytes(self) -> int:
        """Memory held by the vectors (allocated capacity, float32)."""
        return int(self._matrix.nbytes + self._codes.nbytes)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def document_ids(self) -> list[str]:
        """Documents with at least one chunk in the index."""
        return sorted(self._doc_names[c] for c in self._doc_count)

    def add(self, ids: Sequence[str], document_ids: Sequence[str], matrix: npt.ArrayLike) -> None:
        """Add rows (normalised on the way in). An id already present is replaced."""
        m = normalize_rows(matrix) if len(ids) else np.zeros((0, self._dim or 0), np.float32)
        if len(ids) != len(document_ids) or len(ids) != m.shape[0]:
            raise ValueError(
                f"add() needs as many ids ({len(ids)}), document ids ({len(document_ids)}) "
                f"and rows ({m.shape[0]})"
            )
        if not len(ids):
            return
        if len(set(ids)) != len(ids):
            raise ValueError("add() got the same chunk id twice")
        if self._dim is None:
            self._dim = int(m.shape[1])
            self._matrix = np.zeros((0, self._dim), dtype=np.float32)
        if m.shape[1] != self._dim:
            raise ValueError(f"vectors have dimension {m.shape[1]}, the index has {self._dim}")
        present = [self._row_of[i] for i in ids if i in self._row_of]
        if present:
            keep = np.ones(self._n, dtype=bool)
            keep[present] = False
            self._compact(keep)
        codes = np.fromiter(
            (self._code_for(d) for d in document_ids), dtype=np.int32, count=len(ids)
        )
        self._reserve(self._n + len(ids))
        start = self._n
        self._matrix[start : start + len(ids)] = m
        self._codes[start : start + len(ids)] = codes
        for offset, chunk_id in enumerate(ids):
            self._row_of[chunk_id] = start + offset
        self._ids.extend(ids)
        self._n += len(ids)
        self._add_sums(codes, m, sign=1)

    def remove_document(self, document_id: str) -> int:
        """Remove every chunk of a document; returns how many rows went."""
        code = self._doc_code.get(document_id)
        if code is None or self._n == 0:
            return 0
        keep = self._codes[: self._n] != code
        removed = int(self._n - keep.sum())
        if removed:
            self._compact(keep)
        return removed

    def remove(self, ids: Iterable[str]) -> int:
        rows = [self._row_of[i] for i in ids if i in self._row_of]
        if rows:
            keep = np.ones(self._n, dtype=bool)
            keep[rows] = False
            self._compact(keep)
        return len(rows)

    def vector(self, chunk_id: str) -> FloatMatrix:
        row: FloatMatrix = self._matrix[self._row_of[chunk_id]].copy()
        return row

    def document_of(self, chunk_id: str) -> str:
        return self._doc_names[int(self._codes[self._row_of[chunk_id]])]

    def centroid(self, document_id: str) -> FloatMatrix | None:
        """The normalised mean of a document's chunk vectors (its overall topic)."""
        code = self._doc_code.get(document_id)
        if code is None or not self._doc_count.get(code):
            return None
        total = self._doc_sum[code]
        norm = float(np.linalg.norm(total))
        return (total / norm).astype(np.float32) if norm > 0 else total.astype(np.float32)

    # --- search --------------------------------------------------------------------------

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        *,
        exclude_document_ids: Iterable[str] = (),
        query_document_ids: Sequence[str] | None = None,
        min_score: float | None = None,
    ) -> list[list[Neighbor]]:
        """The ``k`` best rows per query, best first (ties: insertion order).

        ``exclude_document_ids`` applies to every query; ``query_document_ids`` names each
        query's own document, excluded for that query only (cross-document search).
        Rows scoring below ``min_score`` are dropped, so a query may get fewer than ``k``.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        m = q.shape[0]
        if query_document_ids is not None and len(query_document_ids) != m:
            raise ValueError("query_document_ids needs one document id per query")
        results: list[list[Neighbor]] = [[] for _ in range(m)]
        n = self._n
        if n == 0 or k <= 0 or m == 0:
            return results
        if q.shape[1] != self._dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index has {self._dim}")
        matrix = self._matrix[:n]
        codes = self._codes[:n]
        excluded = [self._doc_code[d] for d in set(exclude_document_ids) if d in self._doc_code]
        column_mask = np.isin(codes, excluded) if excluded else None
        rows_of: npt.NDArray[np.int64] | None = None
        if column_mask is not None and np.count_nonzero(column_mask) * _GATHER_EXCLUDED >= n:
            # the excluded documents are a large part of the index (a huge new document
            # against a small library): search a copy of the other rows only, not score
            # every excluded row to throw it away
            rows_of = np.flatnonzero(~column_mask)
            matrix, codes, column_mask = matrix[rows_of], codes[rows_of], None
            n = int(rows_of.size)
            if n == 0:
                return results
        own = (
            np.fromiter((self._doc_code.get(d, -1) for d in query_document_ids), np.int32, count=m)
            if query_document_ids is not None
            else None
        )
        kk = min(k, n)
        floor = -np.inf if min_score is None else float(min_score)
        # Queries in blocks of <= 1024; for each, one pass over the rows in blocks sized
        # so a score block stays under block_bytes, keeping a running top-k. The matrix
        # is read once per query block (memory bandwidth, not flops, is the limit).
        q_block = min(m, _QUERY_BLOCK)
        row_block = max(kk, self._block_bytes // (4 * q_block))
        for q_start in range(0, m, q_block):
            q_stop = min(m, q_start + q_block)
            queries_block = q[q_start:q_stop]
            own_block = own[q_start:q_stop, None] if own is not None else None
            best_scores = np.empty((q_stop - q_start, 0), dtype=np.float32)
            best_rows = np.empty((q_stop - q_start, 0), dtype=np.int64)
            for r_start in range(0, n, row_block):
                r_stop = min(n, r_start + row_block)
                scores = queries_block @ matrix[r_start:r_stop].T
                if column_mask is not None:
                    scores[:, column_mask[r_start:r_stop]] = -np.inf
                if own_block is not None:
                    scores[codes[None, r_start:r_stop] == own_block] = -np.inf
                width = r_stop - r_start
                sparse = _top_above(scores, kk, floor) if kk < width and floor > -np.inf else None
                if sparse is not None:
                    scores, top = sparse
                elif kk < width:
                    top = np.argpartition(scores, width - kk, axis=1)[:, width - kk :]
                    scores = np.take_along_axis(scores, top, axis=1)
                else:
                    top = np.broadcast_to(np.arange(width), scores.shape)
                best_scores = np.concatenate([best_scores, scores], axis=1)
                best_rows = np.concatenate([best_rows, top + r_start], axis=1)
                if best_scores.shape[1] > kk:
                    keep = np.argpartition(best_scores, best_scores.shape[1] - kk, axis=1)
                    keep = keep[:, best_scores.shape[1] - kk :]
                    best_scores = np.take_along_axis(best_scores, keep, axis=1)
                    best_rows = np.take_along_axis(best_rows, keep, axis=1)
            order = np.lexsort((best_rows, -best_scores), axis=1)
            best_rows = np.take_along_axis(best_rows, order, axis=1)
            best_scores = np.take_along_axis(best_scores, order, axis=1)
            for r in range(q_stop - q_start):
                out = results[q_start + r]
                for row, score in zip(best_rows[r].tolist(), best_scores[r].tolist(), strict=True):
                    if score == -np.inf or score < floor:
                        break
                    at = row if rows_of is None else int(rows_of[row])
                    out.append((self._ids[at], self._doc_names[int(codes[row])], float(score)))
        return results

    # --- internals -----------------------------------------------------------------------

    def _code_for(self, document_id: str) -> int:
        code = self._doc_code.get(document_id)
        if code is None:
            code = len(self._doc_names)
            self._doc_code[document_id] = code
            self._doc_names.append(document_id)
        return code

    def _reserve(self, size: int) -> None:
        if size <= self._matrix.shape[0]:
            return
        capacity = max(size, 2 * self._matrix.shape[0], 64)
        matrix = np.zeros((capacity, self._dim or 0), dtype=np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        codes = np.zeros(capacity, dtype=np.int32)
        codes[: self._n] = self._codes[: self._n]
        self._matrix, self._codes = matrix, codes

    def _add_sums(self, codes: npt.NDArray[np.int32], rows: FloatMatrix, sign: int) -> None:
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        unique, starts = np.unique(sorted_codes, return_index=True)
        sums = np.add.reduceat(rows[order].astype(np.float64), starts, axis=0)
        counts = np.diff(np.append(starts, len(codes)))
        for code, total, count in zip(unique.tolist(), sums, counts.tolist(), strict=True):
            new_count = self._doc_count.get(code, 0) + sign * count
            if new_count <= 0:
                self._doc_count.pop(code, None)
                self._doc_sum.pop(code, None)
            else:
                self._doc_count[code] = new_count
                self._doc_sum[code] = self._doc_sum.get(code, 0.0) + sign * total

    def _compact(self, keep: npt.NDArray[np.bool_]) -> None:
        """Drop the rows not kept, in place and in order: the runs of kept rows after the
        first gap move down (a memmove each; a worker's index loses one document's rows
        at a time, so there are few runs), and only the ids that moved get a new row."""
        gone = ~keep
        if not gone.any():
            return
        self._add_sums(self._codes[: self._n][gone], self._matrix[: self._n][gone], -1)
        first = int(np.argmax(gone))
        # runs of kept rows at or after the first gap: [start, stop)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], keep[first:].view(np.int8), [0]))))
        starts, stops = edges[0::2] + first, edges[1::2] + first
        write = first
        kept_ids: list[str] = self._ids[:first]
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            size = stop - start
            if write != start:
                self._matrix[write : write + size] = self._matrix[start:stop]
                self._codes[write : write + size] = self._codes[start:stop]
            kept_ids.extend(self._ids[start:stop])
            write += size
        for chunk_id in self._ids[first:]:
            self._row_of.pop(chunk_id, None)
        self._ids = kept_ids
        for row in range(first, write):
            self._row_of[kept_ids[row]] = row
        self._n = write
