"""kNN over unit vectors (exact below a size threshold, approximate above), plus a byte-exact
JSON-safe matrix codec.

Few-shot selection must be reproducible: the same program on the same bank must
pick the same exemplars in the same order on every machine. faiss alone does not
promise an order among equal scores, so `KNNIndex` asks faiss for candidates,
widens the search until every near-tie of the k-th hit is in, rescores the
candidates in float64, and sorts by (score desc, id asc).

Size decides the index (`kind="auto"`): an exact flat scan below `AUTO_THRESHOLD` rows
(0.2 ms a query at 10k, but 3-4 ms at 100k on one core), IVF above it. A single-query scan of
the probed lists is bound by memory traffic, so the lists hold compact codes, and the
candidates they yield are rescored exactly in float32 (`_exact_top`) before the float64 ranking
above: hits, scores and ties are those of the float vectors. `codes="pq4"` (the default for
even dims) is 4-bit product quantisation with two dims a code, scanned by faiss's SIMD
FastScan kernels (64 bytes a 256-d row), with the best `_RERANK["pq4"]` x kk candidates
rescored; "fp16" (odd dims, or fewer than 256 rows) stores float16 rows and rescores 2 x kk.
On 100k WordLlama-like rows at nprobe 144, one query took 0.22 ms CPU with pq4, 0.37 ms with
fp16 and 0.86 ms with float32 lists, with the same recall on bench_overhead.py's queries.
Files that recorded an IVF without `codes` keep float32 lists (`codes="f32"`), as built.

An approximate index is only as good as its recall, so it is measured when the index is
built: recall@5 against the exact search (same tie rule) on two seeded query sets, neither
of which the index can answer by finding the query itself: `recall_sample` bank rows, each
excluding itself (questions like the bank's), and as many normalised midpoints of two random
bank rows (queries between the data, with flat neighbourhoods, like questions phrased unlike
any exemplar). Bank rows alone under-estimate the width new questions need: tuned to 0.99 on
them, bench_overhead.py's 100k queries got 0.973. At the default nlist (4 sqrt(n), 1264 at
100k) the midpoints were as hard as those queries or harder at every nprobe from 48 up; at
nlist 2528 they were not (tuned on them, the queries got 0.964), which is one reason nlist
stays. The search width (IVF's nprobe, HNSW's efSearch) doubles until both sets reach
`target_recall` (0.99), then is bisected back to the narrowest width (within 1/8) that still
does. Both recalls are part of `settings()`, which a program file keeps.
IVF rather than HNSW: at 100k, HNSW (M=32, efConstruction=128) took 66 s CPU to build
single-threaded (IVF-pq4: 12 s) and needed efSearch 128 and ~0.5 ms a query for the recall
IVF-pq4 reaches in ~0.25 ms.
"""
from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

IndexKind = Literal["flat", "hnsw", "ivf", "auto"]
_KINDS = ("flat", "hnsw", "ivf", "auto")
Codes = Literal["f32", "fp16", "pq4"]
_CODES = ("f32", "fp16", "pq4")
# Compact lists: faiss returns this many times the needed candidates, rescored exactly in float32.
_RERANK = {"fp16": 2, "pq4": 32}
_CODEC = "f32le"
# faiss scores are float32; anything within this of the k-th score may be a tie after exact rescoring.
_TIE_TOL = 1e-4
# Below this many queries faiss searches single-threaded (see KNNIndex._faiss_search).
_SMALL_BATCH = 20
#: Banks with at least this many rows get an approximate (IVF) index under kind="auto".
AUTO_THRESHOLD = 20_000
RECALL_K = 5
_MAX_WIDTH = {"ivf": 1 << 16, "hnsw": 4096}


class KNNError(ValueError):
    """Bad input to the index (shape, dtype, k, exclude)."""


class MatrixCodecError(ValueError):
    """An encoded matrix is malformed, truncated, or fails its checksum."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - dependency is pinned
        raise KNNError("the 'faiss-cpu' package is not installed") from e
    return faiss


def _as_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1 and what == "queries":
        a = a[None, :]
    if a.ndim != 2:
        raise KNNError(f"{what}: expected a 2-d array, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise KNNError(f"{what}: expected dim {dim}, got {a.shape[1]}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise KNNError(f"{what}: contains NaN or infinite values")
    return a


class KNNIndex:
    """Inner-product kNN over the rows of `vectors` (ids are row numbers).

    kind: "flat" (exact, default), "hnsw" / "ivf" (approximate, for large banks), or
    "auto" (flat below `auto_threshold` rows, else ivf). Approximate indexes are
    built single-threaded so that the same data always gives the same structure. Their
    search width is tuned to `target_recall` (recall@5 on `recall_sample` leave-one-out bank
    rows and as many row-pair midpoints) unless given (`nprobe` / `ef_search`); the recall is
    measured either way. codes: how IVF lists store vectors (None: "pq4" for even dims, else
    "fp16"; both with an exact rerank; "f32": plain float lists).
    """

    def __init__(self, vectors: np.ndarray, *, kind: IndexKind = "flat", hnsw_m: int = 32,
                 ef_construction: int = 128, ef_search: int | None = None, nlist: int | None = None,
                 nprobe: int | None = None, auto_threshold: int = AUTO_THRESHOLD,
                 target_recall: float = 0.99, recall_sample: int = 200, seed: int = 0,
                 codes: Codes | None = None) -> None:
        if kind not in _KINDS:
            raise KNNError(f"unknown index kind {kind!r}; expected one of {list(_KINDS)}")
        if codes is not None and codes not in _CODES:
            raise KNNError(f"unknown IVF codes {codes!r}; expected one of {list(_CODES)}")
        self._vectors = _as_matrix(vectors, "vectors").copy()  # the caller may mutate its array later
        self.n, self.dim = self._vectors.shape
        if self.dim == 0:
            raise KNNError("vectors: dim must be > 0")
        if kind == "auto":
            kind = "flat" if self.n < auto_threshold else "ivf"
        self.kind: str = kind
        if codes == "pq4" and self.dim % 2:
            raise KNNError(f"pq4 codes need an even dim, got {self.dim}; use codes='fp16'")
        # pq4 trains 16 centroids per pair of dims: too few rows to train them get fp16.
        auto_codes = "pq4" if self.dim % 2 == 0 and self.n >= 256 else "fp16"
        self.codes: str = "f32" if kind != "ivf" else codes or auto_codes
        self.hnsw_m, self.ef_construction = hnsw_m, ef_construction
        self.nlist = nlist or max(1, min(int(4 * math.sqrt(max(self.n, 1))), self.n // 39 or 1))
        self.ef_search = ef_search or 64
        self.nprobe = nprobe or min(8, self.nlist)
        self.target_recall = target_recall
        self.recall: float | None = None  # leave-one-out bank rows
        self.recall_midpoints: float | None = None  # midpoints of two bank rows
        self.recall_sample = 0
        self._index = self._build()
        if self.kind != "flat" and self.n > RECALL_K + 1:
            fixed = nprobe if self.kind == "ivf" else ef_search
            self._measure_and_tune(recall_sample, seed, tune=fixed is None)

    def __len__(self) -> int:
        return self.n

    def settings(self) -> dict[str, Any]:
        """The resolved index configuration (JSON-safe), for logs and frozen programs."""
        s: dict[str, Any] = {"kind": self.kind, "n": self.n, "dim": self.dim}
        if self.kind == "hnsw":
            s.update(hnsw_m=self.hnsw_m, ef_construction=self.ef_construction, ef_search=self.ef_search)
        elif self.kind == "ivf":
            s.update(nlist=self.nlist, nprobe=self.nprobe)
            if self.codes != "f32":  # absent: float32 lists, as every file before fp16 recorded
                s.update(codes=self.codes)
        if self.recall is not None:
            s.update(recall_at_5=round(self.recall, 4), recall_sample=self.recall_sample)
        if self.recall_midpoints is not None:
            s.update(recall_at_5_midpoints=round(self.recall_midpoints, 4))
        return s

    def _width(self) -> int:
        return self.nprobe if self.kind == "ivf" else self.ef_search

    def _set_width(self, w: int) -> None:
        if self.kind == "ivf":
            self.nprobe = min(w, self.nlist)
        else:
            self.ef_search = w

    def _measure_and_tune(self, sample: int, seed: int, *, tune: bool) -> None:
        """Recall@5 of this index against the exact search on seeded queries: `sample` of its own
        rows (each excluding itself) and `sample` midpoints of two random rows; when tuning,
        widen the search until both reach `target_recall` (or the width cannot grow)."""
        m = min(sample, self.n)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(self.n, size=m, replace=False))
        pairs = rng.integers(0, self.n, size=(m, 2))
        mids = self._vectors[pairs[:, 0]] + self._vectors[pairs[:, 1]]
        mids = mids[np.linalg.norm(mids, axis=1) > 1e-6]  # a row and its opposite: no midpoint
        mids = np.ascontiguousarray(mids / np.linalg.norm(mids, axis=1, keepdims=True), dtype=np.float32)
        # The truth follows the same tie rule (a midpoint scores its two rows equally by construction).
        exact = KNNIndex(self._vectors, kind="flat")
        excl = [{int(r)} for r in rows]
        truth_rows = exact.search(self._vectors[rows], RECALL_K, exclude=excl)
        truth_mids = exact.search(mids, RECALL_K)
        del exact

        def recall(got: list[list[int]], truth: list[list[int]]) -> float:
            return float(np.mean([len(set(g) & set(t)) / max(1, len(t)) for g, t in zip(got, truth)])) if truth else 1.0

        def measure() -> float:
            self.recall = recall(self.search(self._vectors[rows], RECALL_K, exclude=excl), truth_rows)
            self.recall_midpoints = recall(self.search(mids, RECALL_K), truth_mids)
            return min(self.recall, self.recall_midpoints)

        worst, self.recall_sample = measure(), m
        limit = self.nlist if self.kind == "ivf" else _MAX_WIDTH["hnsw"]
        if not tune:
            return
        lo = None  # the widest width known to miss the target
        while worst < self.target_recall and self._width() < limit:
            lo = self._width()
            self._set_width(lo * 2)
            worst = measure()
        if lo is None or worst < self.target_recall:
            return
        hi, hi_recalls = self._width(), (self.recall, self.recall_midpoints)  # bisect down to within 1/8
        while hi - lo > max(1, lo // 8):
            mid = (lo + hi) // 2
            self._set_width(mid)
            if measure() >= self.target_recall:
                hi, hi_recalls = mid, (self.recall, self.recall_midpoints)
            else:
                lo = mid
        self._set_width(hi)
        self.recall, self.recall_midpoints = hi_recalls

    def _build(self) -> Any:
        faiss = _faiss()
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
            index.add(self._vectors)
            return index
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # multi-threaded HNSW insertion / k-means is not reproducible
        try:
            if self.kind == "hnsw":
                index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = self.ef_construction
            else:
                quantizer = faiss.IndexFlatIP(self.dim)
                if self.codes == "pq4":  # the factory's index owns its coarse quantiser
                    index = faiss.index_factory(self.dim, f"IVF{self.nlist},PQ{self.dim // 2}x4fs",
                                                faiss.METRIC_INNER_PRODUCT)
                elif self.codes == "fp16":
                    index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, self.nlist,
                                                          faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
                else:
                    index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
                self._quantizer = quantizer  # the index does not own it: keep it alive here
                if self.n:
                    index.train(self._vectors)
            if self.n:
                index.add(self._vectors)
        finally:
            faiss.omp_set_num_threads(threads)
        return index

    def _faiss_search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """One faiss call; small batches run single-threaded.

        On a busy 2-core machine OpenMP's spin-waiting made a single 10k-row query
        ~100x slower with 2 threads (16 ms) than with 1 (0.15 ms). The OpenMP thread
        count is per calling thread, so this does not affect other threads.
        """
        faiss = _faiss()
        params = None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, kk))
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist))
        threads = None if q.shape[0] >= _SMALL_BATCH else 1
        if self.codes == "f32":
            return _search_threads(self._index, q, kk, params, threads)
        _, ids = _search_threads(self._index, q, min(self.n, kk * _RERANK[self.codes]), params, threads)
        return self._exact_top(q, ids, kk)

    def _exact_top(self, q: np.ndarray, ids: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """The kk best of faiss's candidates by exact float32 inner product (ties: smaller id),
        shaped like a faiss result (missing: id -1, score -inf)."""
        valid = ids >= 0
        sims = np.matmul(self._vectors[np.where(valid, ids, 0)], q[:, :, None])[:, :, 0]  # BLAS: 2x einsum
        sims[~valid] = -np.inf
        order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), -sims), axis=-1)[:, :kk]
        rows = np.arange(ids.shape[0])[:, None]
        return sims[rows, order], ids[rows, order]

    def search(self, queries: np.ndarray, k: int,
               exclude: list[set[int]] | None = None) -> list[list[int]]:
        """Ids of the k most similar rows per query, best first, ties broken by smaller id.

        `exclude[i]` holds ids never returned for query i (leave-one-out). Fewer than
        k ids come back only when the bank has fewer eligible rows.
        """
        return self.search_with_scores(queries, k, exclude)[0]

    def search_with_scores(self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None
                           ) -> tuple[list[list[int]], list[list[float]]]:
        """Like `search`, also returning the float64 inner products used for the order."""
        q = _as_matrix(queries, "queries", self.dim)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise KNNError(f"k must be a non-negative integer, got {k!r}")
        excl = self._check_exclude(exclude, q.shape[0])
        if k == 0 or self.n == 0:
            return [[] for _ in range(q.shape[0])], [[] for _ in range(q.shape[0])]
        kk0 = min(self.n, k + max((len(e) for e in excl), default=0) + 1)
        sims0, ids0 = self._faiss_search(q, kk0)
        ids_out, scores_out = [], []
        for i in range(q.shape[0]):
            cand = self._candidates(q[i:i + 1], k, excl[i], kk0, sims0[i], ids0[i])
            ids, scores = self._rank(q[i], cand, k)
            ids_out.append(ids)
            scores_out.append(scores)
        return ids_out, scores_out

    def _check_exclude(self, exclude: list[set[int]] | None, m: int) -> list[set[int]]:
        if exclude is None:
            return [set() for _ in range(m)]
        if len(exclude) != m:
            raise KNNError(f"exclude has {len(exclude)} entries for {m} queries")
        return [set(int(j) for j in e) for e in exclude]

    def _candidates(self, q: np.ndarray, k: int, excl: set[int], kk: int,
                    sims: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Widen the faiss search until no unseen row can tie with or beat the k-th hit."""
        while True:
            valid = ids >= 0
            ids_v, sims_v = ids[valid], sims[valid]
            keep = np.array([j not in excl for j in ids_v.tolist()], dtype=bool)
            kept_sims = sims_v[keep]
            if kk >= self.n:
                break
            if kept_sims.size >= k and sims_v.size == kk:
                kth = float(kept_sims[k - 1])
                if sims_v[-1] < kth - _TIE_TOL * max(1.0, abs(kth)):
                    break
            if kept_sims.size >= k and sims_v.size < kk:  # approximate index returned all it could
                break
            kk = min(self.n, kk * 2)
            sims_b, ids_b = self._faiss_search(q, kk)
            sims, ids = sims_b[0], ids_b[0]
        return ids_v[keep]

    def _rank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        """Exact float64 rescoring, then (score desc, id asc); elementwise sums keep equal rows equal."""
        if cand.size == 0:
            return [], []
        cand = np.unique(cand.astype(np.int64))
        scores = (self._vectors[cand].astype(np.float64) * q.astype(np.float64)).sum(axis=1)
        order = np.lexsort((cand, -scores))[:k]
        return cand[order].tolist(), scores[order].tolist()


def _search_threads(index: Any, q: np.ndarray, kk: int, params: Any, threads: int | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """index.search, with OpenMP limited to `threads` for the call (None: as configured)."""
    if threads is None:
        return index.search(q, kk, params=params)
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        return index.search(q, kk, params=params)
    finally:
        faiss.omp_set_num_threads(before)


def brute_force_knn(vectors: np.ndarray, queries: np.ndarray, k: int,
                    exclude: Iterable[set[int]] | None = None) -> list[list[int]]:
    """Reference kNN in numpy with the same scoring and tie rule (tests, sanity checks)."""
    v = np.asarray(vectors, dtype=np.float32).astype(np.float64)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32)).astype(np.float64)
    excl = list(exclude) if exclude is not None else [set() for _ in range(q.shape[0])]
    out = []
    for i in range(q.shape[0]):
        scores = (v * q[i]).sum(axis=1)
        order = [j for j in np.lexsort((np.arange(v.shape[0]), -scores)).tolist() if j not in excl[i]]
        out.append(order[:k])
    return out


def encode_matrix(m: np.ndarray) -> str:
    """float32 matrix -> 'f32le:<sha256 hex>:<base64>' (little-endian bytes, row-major).

    Stores embeddings inside JSON byte-identically; the checksum catches truncation
    and hand edits. Only float32 is accepted: casting here would silently lose bits.
    """
    a = np.asarray(m)
    if a.ndim != 2:
        raise MatrixCodecError(f"encode_matrix: expected a 2-d array, got shape {a.shape}")
    if a.dtype.kind != "f" or a.dtype.itemsize != 4:  # any byte order
        raise MatrixCodecError(f"encode_matrix: expected float32, got {a.dtype}; cast explicitly first")
    raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
    return f"{_CODEC}:{hashlib.sha256(raw).hexdigest()}:{base64.b64encode(raw).decode('ascii')}"


def decode_matrix(s: str, n: int, dim: int) -> np.ndarray:
    """Inverse of `encode_matrix`: a writable native float32 (n, dim) array, checksum verified."""
    if not isinstance(s, str):
        raise MatrixCodecError(f"decode_matrix: expected a string, got {type(s).__name__}")
    parts = s.split(":", 2)
    if len(parts) != 3 or parts[0] != _CODEC:
        raise MatrixCodecError(f"decode_matrix: not an encoded matrix (expected '{_CODEC}:<sha256>:<base64>')")
    try:
        raw = base64.b64decode(parts[2].encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as e:
        raise MatrixCodecError(f"decode_matrix: invalid base64: {e}") from None
    if hashlib.sha256(raw).hexdigest() != parts[1].lower():
        raise MatrixCodecError("decode_matrix: sha256 mismatch (data corrupted or edited)")
    if n < 0 or dim < 0 or len(raw) != n * dim * 4:
        raise MatrixCodecError(f"decode_matrix: {len(raw)} bytes do not hold a {n}x{dim} float32 matrix")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(n, dim)
