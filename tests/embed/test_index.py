"""KNNIndex against an independent numpy brute force, and the matrix codec round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medcompile.embed.index import KNNError, KNNIndex, MatrixCodecError, decode_matrix, encode_matrix


def reference(bank: np.ndarray, queries: np.ndarray, k: int, exclude=None) -> list[list[int]]:
    """Sort every row by (score desc, id asc); written independently of the module under test."""
    out = []
    for i, q in enumerate(np.atleast_2d(queries)):
        scores = [float(np.dot(bank[j].astype(np.float64), q.astype(np.float64))) for j in range(len(bank))]
        order = sorted(range(len(bank)), key=lambda j: (-scores[j], j))
        skip = exclude[i] if exclude else set()
        out.append([j for j in order if j not in skip][:k])
    return out


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim)).astype(np.float32)
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 17])
def test_flat_matches_brute_force_on_random_unit_vectors(k: int) -> None:
    rng = np.random.default_rng(k)
    bank, queries = unit_rows(rng, 400, 32), unit_rows(rng, 40, 32)
    assert KNNIndex(bank).search(queries, k) == reference(bank, queries, k)


def test_exact_ties_are_broken_by_smaller_id() -> None:
    rng = np.random.default_rng(1)
    # Small integer vectors: every dot product is exact and many of them are equal.
    bank = rng.integers(-1, 2, size=(300, 6)).astype(np.float32)
    queries = rng.integers(-1, 2, size=(30, 6)).astype(np.float32)
    got = KNNIndex(bank).search(queries, 25)
    want = reference(bank, queries, 25)
    assert got == want
    scores = bank.astype(np.float64) @ queries.T.astype(np.float64)
    assert any(len(set(scores[r, i] for r in row)) < len(row) for i, row in enumerate(want)), "no ties tested"


def test_duplicate_rows_come_back_in_id_order() -> None:
    rng = np.random.default_rng(2)
    base = unit_rows(rng, 50, 16)
    bank = np.concatenate([base, base[::-1], base[:10]])  # every row of base appears 2-3 times
    for qi in range(10):
        ids = KNNIndex(bank).search(base[qi], 3)[0]
        assert ids == sorted(j for j in range(len(bank)) if np.array_equal(bank[j], base[qi]))


def test_exclude_hides_items_and_refills_from_below() -> None:
    rng = np.random.default_rng(3)
    bank = unit_rows(rng, 200, 24)
    index = KNNIndex(bank)
    loo = index.search(bank, 5, exclude=[{i} for i in range(200)])
    assert all(i not in row for i, row in enumerate(loo))
    assert loo == reference(bank, bank, 5, [{i} for i in range(200)])
    # Excluding most of the bank forces the search to widen many times.
    big = [set(range(200)) - {7, 150, 199}, set(range(1, 200))]
    got = index.search(bank[:2], 5, exclude=big)
    assert sorted(got[0]) == [7, 150, 199] and got == reference(bank, bank[:2], 5, big)
    assert got[1] == [0]


def test_k_larger_than_bank_and_empty_cases() -> None:
    rng = np.random.default_rng(4)
    bank = unit_rows(rng, 6, 8)
    index = KNNIndex(bank)
    assert sorted(index.search(bank[0], 50)[0]) == list(range(6))
    assert index.search(bank[:2], 0) == [[], []]
    assert KNNIndex(np.zeros((0, 8), np.float32)).search(bank[:1], 3) == [[]]


def test_scores_are_returned_in_descending_order() -> None:
    rng = np.random.default_rng(5)
    bank, q = unit_rows(rng, 100, 16), unit_rows(rng, 3, 16)
    ids, scores = KNNIndex(bank).search_with_scores(q, 10)
    for qi, (row_ids, row_scores) in enumerate(zip(ids, scores)):
        assert row_scores == sorted(row_scores, reverse=True)
        np.testing.assert_allclose(row_scores, bank[row_ids].astype(np.float64) @ q[qi].astype(np.float64),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_have_high_recall_and_are_reproducible(kind: str) -> None:
    rng = np.random.default_rng(6)
    bank, queries = unit_rows(rng, 3000, 32), unit_rows(rng, 50, 32)
    exact = KNNIndex(bank).search(queries, 10)
    a = KNNIndex(bank, kind=kind, nprobe=32)
    got = a.search(queries, 10)
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
    assert recall >= 0.9, recall
    assert KNNIndex(bank, kind=kind, nprobe=32).search(queries, 10) == got
    loo = a.search(bank[:20], 5, exclude=[{i} for i in range(20)])
    assert all(i not in row and len(row) == 5 for i, row in enumerate(loo))
    assert a.settings()["kind"] == kind


def test_auto_kind_picks_flat_for_small_banks() -> None:
    bank = unit_rows(np.random.default_rng(7), 100, 8)
    assert KNNIndex(bank, kind="auto").kind == "flat"
    assert KNNIndex(bank, kind="auto", auto_threshold=50).kind == "ivf"


def test_bad_input_gives_clear_errors() -> None:
    bank = unit_rows(np.random.default_rng(8), 10, 4)
    index = KNNIndex(bank)
    with pytest.raises(KNNError, match="expected dim 4"):
        index.search(np.ones((1, 5), np.float32), 1)
    with pytest.raises(KNNError, match="NaN"):
        KNNIndex(np.full((2, 4), np.nan, np.float32))
    with pytest.raises(KNNError, match="exclude has 1 entries for 2 queries"):
        index.search(bank[:2], 1, exclude=[set()])
    with pytest.raises(KNNError, match="non-negative integer"):
        index.search(bank[:1], -1)
    with pytest.raises(KNNError, match="unknown index kind"):
        KNNIndex(bank, kind="lsh")  # type: ignore[arg-type]


finite_or_not = hnp.arrays(
    dtype=hnp.floating_dtypes(sizes=32, endianness="="),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
    elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
)


@settings(max_examples=200, deadline=None)
@given(finite_or_not)
def test_codec_round_trip_is_byte_exact(m: np.ndarray) -> None:
    m = m.astype(np.float32)
    s = json.loads(json.dumps({"e": encode_matrix(m)}))["e"]
    back = decode_matrix(s, *m.shape)
    assert back.dtype == np.float32 and back.shape == m.shape and back.flags.writeable
    assert back.tobytes() == m.tobytes()  # NaN payloads and -0.0 included


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.dtype(">f4"), (3, 5), elements=st.floats(width=32, allow_nan=False)))
def test_codec_is_little_endian_whatever_the_input_byte_order(m: np.ndarray) -> None:
    s = encode_matrix(m)
    assert s == encode_matrix(m.astype("<f4"))
    assert np.array_equal(decode_matrix(s, 3, 5), m.astype(np.float32))


def test_codec_detects_corruption_and_wrong_shapes() -> None:
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = encode_matrix(m)
    head, digest, body = s.split(":")
    flipped = body[:-6] + ("A" if body[-6] != "A" else "B") + body[-5:]
    with pytest.raises(MatrixCodecError, match="sha256 mismatch"):
        decode_matrix(f"{head}:{digest}:{flipped}", 3, 4)
    with pytest.raises(MatrixCodecError, match="do not hold a 4x4"):
        decode_matrix(s, 4, 4)
    with pytest.raises(MatrixCodecError, match="not an encoded matrix"):
        decode_matrix("f64le:" + s[6:], 3, 4)
    with pytest.raises(MatrixCodecError, match="invalid base64"):
        decode_matrix(f"{head}:{digest}:@@@@", 3, 4)
    with pytest.raises(MatrixCodecError, match="expected float32"):
        encode_matrix(m.astype(np.float64))


def clustered_rows(rng: np.random.Generator, n: int, dim: int, centers: int = 40) -> np.ndarray:
    c = unit_rows(rng, centers, dim)
    x = c[rng.integers(0, centers, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_auto_index_above_the_threshold_is_ivf_tuned_to_the_target_recall() -> None:
    rng = np.random.default_rng(9)
    bank, queries = clustered_rows(rng, 4000, 32), clustered_rows(rng, 40, 32)
    a = KNNIndex(bank, kind="auto", auto_threshold=1000, target_recall=0.99)
    s = a.settings()
    assert s["kind"] == "ivf" and s["recall_sample"] == 200 and s["recall_at_5"] >= 0.99
    assert 8 <= s["nprobe"] <= s["nlist"]
    # the recorded recall is what it says: recompute it on the same sample with the exact index
    exact = KNNIndex(bank).search(queries, 5)
    got = a.search(queries, 5)
    assert np.mean([len(set(g) & set(e)) / 5 for g, e in zip(got, exact)]) >= 0.95
    again = KNNIndex(bank, kind="auto", auto_threshold=1000, target_recall=0.99)
    assert again.settings() == s and again.search(queries, 5) == got  # same data, same index and answers
    fixed = KNNIndex(bank, kind="ivf", nprobe=1)  # a given width is kept, its (low) recall reported
    assert fixed.nprobe == 1 and fixed.settings()["recall_at_5"] < s["recall_at_5"]
    assert "recall_at_5" not in KNNIndex(bank).settings()  # exact: nothing to measure


@pytest.mark.parametrize("codes", ["fp16", "pq4"])
def test_compact_lists_reranked_exactly_give_the_exact_answer_when_every_list_is_probed(codes: str) -> None:
    rng = np.random.default_rng(10)
    # Small integers give many equal scores: the exact rerank must keep id order.
    bank = rng.integers(-2, 3, size=(1200, 8)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(30, 8)).astype(np.float32)
    full = KNNIndex(bank, kind="ivf", nlist=16, nprobe=16, codes=codes)  # type: ignore[arg-type]
    assert full.codes == codes and full.settings()["codes"] == codes
    excl = [{i, i + 1} for i in range(30)]
    assert full.search(queries, 12, exclude=excl) == reference(bank, queries, 12, excl)
    ids, scores = full.search_with_scores(queries, 12)
    for row_ids, row_scores, q in zip(ids, scores, queries):
        assert row_scores == (bank[row_ids].astype(np.float64) @ q.astype(np.float64)).tolist()
    f32 = KNNIndex(bank, kind="ivf", nlist=16, nprobe=16, codes="f32")
    assert "codes" not in f32.settings() and f32.search(queries, 12) == full.search(queries, 12)


def test_recall_is_measured_on_bank_rows_and_on_row_midpoints_and_tuned_until_both_reach_the_target() -> None:
    rng = np.random.default_rng(11)
    bank = clustered_rows(rng, 4000, 32)
    a = KNNIndex(bank, kind="ivf", target_recall=0.99)
    s = a.settings()
    assert s["recall_at_5"] >= 0.99 and s["recall_at_5_midpoints"] >= 0.99
    narrow = KNNIndex(bank, kind="ivf", nprobe=max(1, s["nprobe"] // 2))  # narrower: some set misses the target
    assert min(narrow.recall, narrow.recall_midpoints) < 0.99
    # the recorded midpoint recall is what it says: midpoints drawn the way the index draws them,
    # against the exact search with the same tie rule (a midpoint ties its two rows by construction)
    pairs = np.random.default_rng(0)
    pairs.choice(4000, size=200, replace=False)
    p = pairs.integers(0, 4000, size=(200, 2))
    mids = bank[p[:, 0]] + bank[p[:, 1]]
    mids /= np.linalg.norm(mids, axis=1, keepdims=True)
    exact, got = KNNIndex(bank).search(mids, 5), a.search(mids, 5)
    measured = np.mean([len(set(g) & set(e)) / 5 for g, e in zip(got, exact)])
    assert measured == pytest.approx(s["recall_at_5_midpoints"], abs=1e-4)
    with pytest.raises(KNNError, match="unknown IVF codes"):
        KNNIndex(bank, kind="ivf", codes="sq4")  # type: ignore[arg-type]
    with pytest.raises(KNNError, match="even dim"):
        KNNIndex(bank[:, :31], kind="ivf", codes="pq4")


def test_ivf_codes_default_to_pq4_for_even_dims_and_fp16_otherwise() -> None:
    rng = np.random.default_rng(12)
    assert KNNIndex(unit_rows(rng, 600, 16), kind="ivf").codes == "pq4"
    assert KNNIndex(unit_rows(rng, 600, 15), kind="ivf").codes == "fp16"  # pq4 pairs dims
    assert KNNIndex(unit_rows(rng, 100, 16), kind="ivf").codes == "fp16"  # too few rows to train pq4
    assert KNNIndex(unit_rows(rng, 100, 16)).codes == "f32" and "codes" not in KNNIndex(unit_rows(rng, 100, 16)).settings()
