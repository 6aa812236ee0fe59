"""verify/compare.py: each comparison rule fails what it exists to catch (through compare_output only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tf_parity_export.verify.compare import compare_output

# A comparison must not warn (inf - inf, x / 0): those warnings would reach every user's terminal.
pytestmark = pytest.mark.filterwarnings("error")


def _fields(c) -> dict:
    return {k: ("nan" if isinstance(v, float) and v != v else v) for k, v in vars(c).items()}

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
    assert c.to_json()["max_rel"] is None and c.to_json()["max_abs"] == 0.5
    json.dumps(c.to_json(), allow_nan=False)


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
                          "note": f"dtype {np.dtype(got_dtype).name} != reference float32"}


@pytest.mark.parametrize("got", [np.zeros((1, 2), np.float32), np.zeros((3, 1), np.float32), np.zeros(3, np.float32)],
                         ids=["fewer", "transposed", "rank"])
def test_another_shape_fails(got):
    c = compare_output("y", REF, got, 1e9, 2e9)
    assert _fields(c) == {"output": "y", "shape": list(got.shape), "dtype": "float32", "max_abs": "nan",
                          "max_rel": "nan", "worst_index": [], "atol": 1e9, "rtol": 2e9, "passed": False,
                          "note": f"shape {tuple(got.shape)} != reference (1, 3)"}


def test_missing_output_fails():
    c = compare_output("y", REF, None, 1e-5, 2e-5)
    assert _fields(c) == {"output": "y", "shape": [], "dtype": "", "max_abs": "nan", "max_rel": "nan",
                          "worst_index": [], "atol": 1e-5, "rtol": 2e-5, "passed": False, "note": "output missing"}


def test_lists_are_compared_as_arrays():
    assert compare_output("y", np.array([1.0, 2.0]), [1.0, 2.0 + 1e-9], 1e-5, 1e-5)
    assert not compare_output("y", np.array([1.0, 2.0], np.float32), [1.0, 2.0], 1e-5, 1e-5)  # a list is float64


def test_empty_and_scalar_outputs():
    empty = compare_output("y", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), 1e-5, 2e-5)
    assert _fields(empty) == {"output": "y", "shape": [0, 3], "dtype": "float32", "max_abs": 0.0, "max_rel": 0.0,
                              "worst_index": [], "atol": 1e-5, "rtol": 2e-5, "passed": True, "note": ""}
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
