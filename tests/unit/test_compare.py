"""verify/compare.py: each comparison rule fails what it exists to catch (through compare_output only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tf_parity_export.verify.compare import BLOCK, SUM_SIGMAS, UNIT_ROUNDOFF, compare_output, summed_rtol
from tf_parity_export.verify.layout import json_safe

# A comparison must not warn (inf - inf, x / 0): those warnings would reach every user's terminal.
pytestmark = pytest.mark.filterwarnings("error")


def _fields(c) -> dict:
    """The comparison's verdict fields (the scale-aware metrics have tests of their own)."""
    return {k: ("nan" if isinstance(v, float) and v != v else v) for k, v in vars(c).items()
            if k not in ("scale_error", "cosine", "snr_db")}

REF = np.array([[1.0, 100.0, 0.0]], np.float32)


def test_identical_outputs_pass_with_zero_error():
    c = compare_output("y", REF, REF.copy(), 1e-5, 1e-5)
    assert c and c.passed and (c.max_abs, c.max_rel, c.note) == (0.0, 0.0, "")
    assert (c.output, c.shape, c.dtype, c.atol, c.rtol) == ("y", [1, 3], "float32", 1e-5, 1e-5)
    assert c.worst_index == [0, 0]


@pytest.mark.parametrize("delta, passes", [
    (0.9e-5, True),    # under atol on the 0 element
    (1.1e-5, False),   # over atol on 0, where rtol * |0| = 0
])
def test_atol_governs_where_the_reference_is_zero(delta, passes):
    got = REF + np.array([[0, 0, delta]], np.float32)
    c = compare_output("y", REF, got, 1e-5, 1e-5)
    assert bool(c) is passes and c.passed is passes
    assert c.worst_index == [0, 2]
    if not passes:
        assert c.note == "1 of 3 elements out of tolerance"


def test_rtol_forgives_an_error_over_atol_on_a_large_value_but_not_both():
    ref = np.array([1000.0], np.float64)
    assert compare_output("y", ref, ref + 0.009, 1e-5, 1e-5)         # over atol, under rtol*1000 = 0.01
    assert not compare_output("y", ref, ref + 0.011, 1e-5, 1e-5)     # over both
    assert compare_output("y", ref, ref + 0.011, 0.02, 1e-5)          # under atol, over rtol
    exact = compare_output("y", ref, ref + 0.01 * (1 - 1e-9), 1e-5, 1e-5)
    assert exact  # an error equal to a bound is not over it


def test_max_abs_and_max_rel_are_the_worst_element():
    ref = np.array([2.0, -4.0, 8.0])
    got = np.array([2.0, -4.5, 8.25])
    c = compare_output("y", ref, got, 1e-5, 1e-5)
    assert not c and c.max_abs == 0.5 and c.max_rel == 0.125 and c.worst_index == [1]
    assert c.note == "2 of 3 elements out of tolerance"


def test_relative_error_against_zero_reference_is_infinite_and_json_safe():
    ref = np.array([0.0, 1.0])
    c = compare_output("y", ref, np.array([0.5, 1.0]), 1e-5, 1e-5)
    assert not c and c.max_abs == 0.5 and c.max_rel == np.inf
    # to_json keeps the float; the report writer spells it out (layout.json_safe), so the JSON stays strict
    assert c.to_json()["max_rel"] == np.inf and c.to_json()["max_abs"] == 0.5
    safe = json_safe(c.to_json())
    assert safe["max_rel"] == "Infinity" and safe["max_abs"] == 0.5
    json.dumps(safe, allow_nan=False)


def test_nan_against_a_finite_reference_fails():
    ref = np.array([1.0, 2.0], np.float32)
    c = compare_output("y", ref, np.array([1.0, np.nan], np.float32), 1e-5, 1e-5)
    assert not c and c.max_abs == np.inf and c.worst_index == [1]
    assert c.note == "1 of 2 elements out of tolerance"


def test_finite_output_against_a_nan_reference_fails():
    ref = np.array([np.nan, 2.0], np.float32)
    c = compare_output("y", ref, np.array([0.0, 2.0], np.float32), 1e3, 1e3)
    assert not c and c.worst_index == [0]


def test_nan_where_the_reference_is_nan_agrees():
    ref = np.array([np.nan, 2.0], np.float32)
    c = compare_output("y", ref, ref.copy(), 1e-5, 1e-5)
    assert c and c.max_abs == 0.0


def test_infinities_agree_only_with_the_same_infinity():
    ref = np.array([np.inf, -np.inf])
    assert compare_output("y", ref, ref.copy(), 1e-5, 1e-5)
    assert not compare_output("y", ref, np.array([np.inf, np.inf]), 1e-5, 1e-5)
    assert not compare_output("y", ref, np.array([1e30, -np.inf]), 1e3, 1e3)
    assert not compare_output("y", np.array([1e30]), np.array([np.inf]), 1e3, 1e3)


@pytest.mark.parametrize("got_dtype", [np.float64, np.float16, np.int32])
def test_another_dtype_than_the_reference_fails_even_with_equal_values(got_dtype):
    ref = np.array([1.0, 2.0], np.float32)
    c = compare_output("y", ref, ref.astype(got_dtype), 1e-5, 2e-5)
    assert _fields(c) == {"output": "y", "shape": [2], "dtype": np.dtype(got_dtype).name, "max_abs": "nan",
                          "max_rel": "nan", "worst_index": [], "atol": 1e-5, "rtol": 2e-5, "passed": False,
                          "note": f"dtype {np.dtype(got_dtype).name} != reference float32", "terms": 1}


@pytest.mark.parametrize("got", [np.zeros((1, 2), np.float32), np.zeros((3, 1), np.float32), np.zeros(3, np.float32)],
                         ids=["fewer", "transposed", "rank"])
def test_another_shape_fails(got):
    c = compare_output("y", REF, got, 1e9, 2e9)
    assert _fields(c) == {"output": "y", "shape": list(got.shape), "dtype": "float32", "max_abs": "nan",
                          "max_rel": "nan", "worst_index": [], "atol": 1e9, "rtol": 2e9, "passed": False,
                          "note": f"shape {tuple(got.shape)} != reference (1, 3)", "terms": 1}


def test_missing_output_fails():
    c = compare_output("y", REF, None, 1e-5, 2e-5)
    assert _fields(c) == {"output": "y", "shape": [], "dtype": "", "max_abs": "nan", "max_rel": "nan",
                          "worst_index": [], "atol": 1e-5, "rtol": 2e-5, "passed": False, "note": "output missing",
                          "terms": 1}


def test_lists_are_compared_as_arrays():
    assert compare_output("y", np.array([1.0, 2.0]), [1.0, 2.0 + 1e-9], 1e-5, 1e-5)
    assert not compare_output("y", np.array([1.0, 2.0], np.float32), [1.0, 2.0], 1e-5, 1e-5)  # a list is float64


def test_empty_and_scalar_outputs():
    empty = compare_output("y", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), 1e-5, 2e-5)
    assert _fields(empty) == {"output": "y", "shape": [0, 3], "dtype": "float32", "max_abs": 0.0, "max_rel": 0.0,
                              "worst_index": [], "atol": 1e-5, "rtol": 2e-5, "passed": True, "note": "",
                              "terms": 1}
    scalar = compare_output("y", np.float32(3), np.float32(3.5), 1e-5, 1e-5)
    assert not scalar and scalar.worst_index == [] and scalar.max_abs == 0.5
    assert compare_output("y", np.array(3.0), np.array(3.0), 1e-5, 1e-5).worst_index == []


def test_boolean_and_integer_outputs_compare_exactly():
    assert compare_output("y", np.array([True, False]), np.array([True, False]), 0, 0)
    assert not compare_output("y", np.array([True, False]), np.array([True, True]), 0, 0)
    assert not compare_output("y", np.array([5], np.int64), np.array([6], np.int64), 0.5, 0.1)


def test_an_error_equal_to_atol_or_to_rtol_times_the_reference_passes():
    """Both bounds are inclusive: an element fails only when it is over atol AND over rtol * |ref|."""
    assert compare_output("y", np.array([0.0]), np.array([0.5]), 0.5, 0.0)      # diff == atol
    assert not compare_output("y", np.array([0.0]), np.array([0.75]), 0.5, 0.0)
    assert compare_output("y", np.array([2.0]), np.array([3.0]), 0.0, 0.5)      # diff == rtol * |ref|
    assert not compare_output("y", np.array([2.0]), np.array([3.5]), 0.0, 0.5)


def test_zero_and_nan_references_do_not_warn():
    ref = np.array([0.0, np.nan, np.inf, 1.0])
    assert not compare_output("y", ref, np.array([1.0, 0.0, -np.inf, 1.0]), 1e-5, 1e-5)
    assert compare_output("y", ref, ref.copy(), 1e-5, 1e-5)


# --- tolerance at scale: summed_rtol, and comparison in blocks ------------------------------------

def test_summed_rtol_is_the_spec_rtol_for_one_term_and_grows_with_sqrt_n():
    assert UNIT_ROUNDOFF == 2.0**-24 and SUM_SIGMAS == 2.0
    assert summed_rtol(1e-5, 1) == 1e-5 and summed_rtol(1e-5, 0) == 1e-5
    assert summed_rtol(1e-5, 2) == 1e-5 + 2.0 * 2**0.5 * 2.0**-24
    assert summed_rtol(1e-5, 100) == 1e-5 + 2.0 * 10 * 2.0**-24
    assert summed_rtol(0.0, 10**6) == 2.0 * 1000 * 2.0**-24


def test_a_summed_output_is_held_to_the_grown_rtol_and_reports_it():
    """An element that sums n float32 terms may drift by the summation order: rtol grows, a real change still fails."""
    ref = np.array([1000.0], np.float32)
    n = 10**6  # rtol_n = 1e-5 + 2e3 * 2**-24 = 1.29e-4: 0.129 on 1000
    grown = summed_rtol(1e-5, n)
    ok = compare_output("total", ref, ref + np.float32(0.1), 0.0, 1e-5, terms=n)
    assert ok and ok.terms == n and ok.rtol == grown and ok.to_json()["terms"] == n
    assert not compare_output("total", ref, ref + np.float32(0.1), 0.0, 1e-5)  # one term: 1e-5 * 1000 = 0.01
    assert not compare_output("total", ref, ref + np.float32(0.2), 0.0, 1e-5, terms=n)
    for failed in (compare_output("total", ref, None, 0.0, 1e-5, terms=n),
                   compare_output("total", ref, ref[:0], 0.0, 1e-5, terms=n),
                   compare_output("total", ref, ref.astype(np.float64), 0.0, 1e-5, terms=n)):
        assert not failed and failed.terms == n and failed.rtol == grown
    empty = compare_output("total", ref[:0], ref[:0], 0.0, 1e-5, terms=n)
    assert empty and empty.terms == n and empty.rtol == grown


def test_blocks_find_the_worst_element_and_count_every_bad_one_across_blocks():
    ref = np.zeros(2 * BLOCK + 3, np.float32)
    got = ref.copy()
    got[5] = 0.5                # first block
    got[BLOCK + 7] = 2.0        # second block: the worst
    got[2 * BLOCK + 1] = 1.0    # the short last block
    c = compare_output("y", ref, got, 0.1, 0.0)
    assert not c and c.max_abs == 2.0 and c.worst_index == [BLOCK + 7] and c.max_rel == np.inf
    assert c.note == f"3 of {ref.size} elements out of tolerance"
    got[BLOCK + 7] = 0.0
    c = compare_output("y", ref, got, 0.1, 0.0)
    assert c.max_abs == 1.0 and c.worst_index == [2 * BLOCK + 1]  # a later block's worse element wins
    got[2 * BLOCK + 1] = 0.25
    c = compare_output("y", ref, got, 0.1, 0.0)
    assert c.max_abs == 0.5 and c.worst_index == [5]  # an earlier block's worse element is kept
    rel = compare_output("y", np.full(BLOCK + 1, 2.0, np.float32), np.concatenate(
        [np.full(BLOCK, 2.0, np.float32), np.float32([3.0])]), 0.0, 0.0)
    assert rel.max_rel == 0.5 and rel.worst_index == [BLOCK]


def test_opposite_extreme_values_overflow_quietly_and_fail():
    ref = np.array([1.7e308, 1.0])
    c = compare_output("y", ref, np.array([-1.7e308, 1.0]), 1e-5, 1e-5)  # the difference overflows to inf
    assert not c and c.max_abs == np.inf and c.worst_index == [0]


def test_an_infinity_against_the_opposite_infinity_has_an_infinite_relative_error():
    c = compare_output("y", np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]), 1e-5, 1e-5)
    assert not c and c.max_abs == np.inf and c.max_rel == np.inf


def test_the_first_of_equal_worst_errors_across_blocks_is_reported():
    ref = np.zeros(2 * BLOCK, np.float32)
    got = ref.copy()
    got[5] = got[BLOCK + 5] = 1.0
    assert compare_output("y", ref, got, 0.1, 0.0).worst_index == [5]


def test_scale_aware_metrics():
    ref = np.array([3.0, -4.0, 0.0], np.float32)
    same = compare_output("y", ref, ref.copy(), 1e-5, 1e-5)
    assert (same.scale_error, same.cosine, same.snr_db) == (0.0, 1.0, float("inf"))
    got = ref + np.array([0.0, 0.4, 0.0], np.float32)
    c = compare_output("y", ref, got, 1e-5, 1e-5)
    assert c.scale_error == pytest.approx(0.4 / 4.0, rel=1e-6)
    assert c.snr_db == pytest.approx(10 * np.log10(25.0 / 0.16), rel=1e-5)
    assert c.cosine == pytest.approx((9 + 4 * 3.6) / (5.0 * np.sqrt(9 + 3.6**2)), rel=1e-6)
    zeros = compare_output("y", np.zeros(3, np.float32), np.array([0, 1e-3, 0], np.float32), 1e-5, 1e-5)
    assert zeros.scale_error == float("inf") and zeros.cosine == 0.0 and zeros.snr_db == float("-inf")
    both_zero = compare_output("y", np.zeros(2, np.float32), np.zeros(2, np.float32), 1e-5, 1e-5)
    assert (both_zero.scale_error, both_zero.cosine, both_zero.snr_db) == (0.0, 1.0, float("inf"))
    nan = compare_output("y", ref, np.array([3.0, np.nan, 0.0], np.float32), 1e-5, 1e-5)
    assert all(np.isnan(v) for v in (nan.scale_error, nan.cosine, nan.snr_db))
    wrong_shape = compare_output("y", ref, ref[:2], 1e-5, 1e-5)
    assert np.isnan(wrong_shape.cosine) and "scale_error" in wrong_shape.to_json()


def test_scale_metrics_add_up_over_blocks(monkeypatch):
    from tf_parity_export.verify import compare

    rng = np.random.default_rng(3)
    ref = rng.normal(size=1000).astype(np.float32)
    got = (ref + rng.normal(scale=1e-3, size=1000)).astype(np.float32)
    whole = compare_output("y", ref, got, 1e-5, 1e-5)
    monkeypatch.setattr(compare, "BLOCK", 7)
    blocks = compare_output("y", ref, got, 1e-5, 1e-5)
    for field in ("scale_error", "cosine", "snr_db"):
        assert getattr(blocks, field) == pytest.approx(getattr(whole, field), rel=1e-9)


def test_an_output_is_insensitive_only_where_one_constant_passes_at_every_position():
    from tf_parity_export.verify.compare import insensitivity

    flat = [np.full((3, 2), 0.5, np.float32), np.full((2, 2), 0.5 + 4e-6, np.float32)]
    info = insensitivity(flat, 1e-5, 0.0)
    assert info == {"spread": pytest.approx(4e-6, rel=1e-2), "rows": 5, "atol": 1e-5, "rtol": 0.0}  # float32 0.5 + 4e-6
    # spread 3e-5 > 2 atol: no single value is within atol of both ends
    assert insensitivity([np.array([[0.0], [3e-5]], np.float32)], 1e-5, 0.0) is None
    # exactly 2 atol apart: the midpoint passes against both
    assert insensitivity([np.array([[0.0], [2e-5]])], 1e-5, 0.0) is not None
    # one position moving is enough to make the output sensitive
    assert insensitivity([np.array([[1.0, 0.0], [1.0, 5.0]], np.float32)], 1e-5, 1e-5) is None
    # rtol counts: 1000 and 1000.01 are within rtol=1e-5 of 1000.005
    assert insensitivity([np.array([[1000.0], [1000.01]])], 0.0, 1e-5) is not None
    assert insensitivity([np.array([[1000.0], [1000.03]])], 0.0, 1e-5) is None
    # an output without a batch dimension: one row per case
    assert insensitivity([np.float32(2.0), np.float32(2.0)], 1e-5, 1e-5, batched=False)["rows"] == 2
    assert insensitivity([np.float32(2.0), np.float32(3.0)], 1e-5, 1e-5, batched=False) is None
    # one value always matches itself; NaNs have nothing to agree with; shapes must agree
    assert insensitivity([np.array([[1.0]])], 1e-5, 1e-5) is None
    assert insensitivity([np.array([[np.nan], [np.nan]])], 1e-5, 1e-5) is None
    assert insensitivity([np.zeros((2, 2)), np.zeros((2, 3))], 1e-5, 1e-5) is None


def test_insensitivity_reads_large_outputs_in_blocks():
    from tf_parity_export.verify.compare import insensitivity

    big = np.zeros((200_000, 2), np.float32)
    big[150_000, 1] = 1.0  # one row far beyond the first block moves position 1
    assert insensitivity([big], 1e-5, 1e-5) is None
    big[150_000, 1] = 0.0
    assert insensitivity([big], 1e-5, 1e-5)["rows"] == 200_000
