"""verify/inputs.py: seeded random cases, and every bad user feed refused with one line."""

from __future__ import annotations

import numpy as np
import pytest

from tf_parity_export.models import InputError, ModelSpec, TensorSig
from tf_parity_export.verify import inputs

SPEC = ModelSpec(name="toy", builder="none:none", summary="",
                 inputs=(TensorSig("x", (None, 4)), TensorSig("k", (None, 2, 3))), outputs=(TensorSig("y", (None, 1)),))
GOOD = {"x": np.zeros((2, 4), np.float32), "k": np.ones((2, 2, 3), np.float32)}


def test_random_cases_one_per_batch_size_uniform_and_seeded():
    cases = inputs.random_cases(SPEC)
    assert [(c.name, c.kind) for c in cases] == [("random_b1", "random"), ("random_b2", "random"), ("random_b7", "random")]
    assert inputs.BATCH_SIZES == (1, 2, 7)
    for case, batch in zip(cases, (1, 2, 7)):
        assert case.feed["x"].shape == (batch, 4) and case.feed["k"].shape == (batch, 2, 3)
        assert all(v.dtype == np.float32 and v.min() >= 0 and v.max() < 1 for v in case.feed.values())
        rng = np.random.default_rng([inputs.INPUT_SEED, batch])
        assert np.array_equal(case.feed["x"], rng.random((batch, 4), dtype=np.float32))
        assert np.array_equal(case.feed["k"], rng.random((batch, 2, 3), dtype=np.float32))
    again = inputs.random_cases(SPEC, (3,), seed=7)
    assert [c.name for c in again] == ["random_b3"]
    assert np.array_equal(again[0].feed["x"], np.random.default_rng([7, 3]).random((3, 4), dtype=np.float32))
    assert inputs.INPUT_SEED == 1234


def test_a_good_feed_is_returned_as_arrays():
    checked = inputs.validate_feed(SPEC, {"k": GOOD["k"], "x": GOOD["x"][0:1].copy()}, "mine.npz")
    assert list(checked) == ["x", "k"]  # in the spec's order
    assert isinstance(checked["x"], np.ndarray) and checked["x"].shape == (1, 4)


@pytest.mark.parametrize("feed, message", [
    ({"x": GOOD["x"]}, "mine.npz: has keys ['x'], toy takes ['x', 'k']"),
    ({**GOOD, "extra": GOOD["x"]}, "mine.npz: has keys ['extra', 'k', 'x'], toy takes ['x', 'k']"),
    ({**GOOD, "x": GOOD["x"].astype(np.float64)}, "mine.npz: 'x' is float64, toy takes float32"),
    ({**GOOD, "k": GOOD["k"].astype(np.int32)}, "mine.npz: 'k' is int32, toy takes float32"),
    ({**GOOD, "x": np.zeros((2, 5), np.float32)},
     "mine.npz: 'x' has shape (2, 5), toy takes ('batch', 4) with batch >= 1"),
    ({**GOOD, "x": np.zeros((4,), np.float32)}, "mine.npz: 'x' has shape (4,), toy takes ('batch', 4) with batch >= 1"),
    ({**GOOD, "x": np.zeros((0, 4), np.float32)},
     "mine.npz: 'x' has shape (0, 4), toy takes ('batch', 4) with batch >= 1"),
    ({**GOOD, "k": np.zeros((2, 3, 2), np.float32)},
     "mine.npz: 'k' has shape (2, 3, 2), toy takes ('batch', 2, 3) with batch >= 1"),
    ({**GOOD, "k": np.zeros((2, 2, 3, 1), np.float32)},
     "mine.npz: 'k' has shape (2, 2, 3, 1), toy takes ('batch', 2, 3) with batch >= 1"),
    ({**GOOD, "x": np.array([[0, 0, np.nan, 0]], np.float32)}, "mine.npz: 'x' contains NaN; inputs must be finite"),
    ({**GOOD, "x": np.array([[0, 0, np.inf, 0]], np.float32)}, "mine.npz: 'x' contains infinity; inputs must be finite"),
    ({**GOOD, "k": np.full((1, 2, 3), -np.inf, np.float32)}, "mine.npz: 'k' contains infinity; inputs must be finite"),
    ({**GOOD, "x": np.array([[np.inf, np.nan, 0, 0]], np.float32)}, "mine.npz: 'x' contains NaN; inputs must be finite"),
], ids=["missing", "extra", "float64", "int32", "width", "rank-low", "batch-0", "inner", "rank-high", "nan", "inf",
        "-inf", "nan-and-inf"])
def test_each_bad_feed_is_refused_with_one_line(feed, message):
    with pytest.raises(InputError) as info:
        inputs.validate_feed(SPEC, feed, "mine.npz")
    assert str(info.value) == message


def test_a_scalar_spec_takes_a_scalar():
    spec = ModelSpec(name="s", builder="none:none", summary="", inputs=(TensorSig("t", ()),), outputs=())
    assert inputs.validate_feed(spec, {"t": np.float32(2)}, "src")["t"].shape == ()


def test_load_npz_reads_a_validated_user_case(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, **GOOD)
    case = inputs.load_npz(path, SPEC)
    assert (case.name, case.kind) == ("user:mine.npz", "user")
    assert all(np.array_equal(case.feed[k], GOOD[k]) for k in GOOD)
    np.savez(path, x=GOOD["x"])
    with pytest.raises(InputError, match=r"mine\.npz: has keys \['x'\], toy takes \['x', 'k'\]$"):
        inputs.load_npz(path, SPEC)


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_load_npz_refuses_unreadable_files(tmp_path, content):
    path = tmp_path / "mine.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        inputs.load_npz(path, SPEC)
    assert str(info.value).startswith(f"{path}: not a readable .npz file (") and "\n" not in str(info.value)
    assert not str(info.value).endswith("; re-export")  # a user's file: nothing to re-export


@pytest.mark.parametrize("array, kind", [(np.array([{"a": 1}], dtype=object), "object"),
                                         (np.array(["ab"]), "<U2"), (np.zeros(2, "M8[s]"), "datetime64[s]")])
def test_read_npz_refuses_pickles_and_non_numeric_arrays_before_reading_them(tmp_path, array, kind):
    path = tmp_path / "mine.npz"
    np.savez(path, x=array, k=GOOD["k"])
    with pytest.raises(InputError) as info:
        inputs.load_npz(path, SPEC)
    assert str(info.value) == f"{path}: 'x' is a {kind} array; inputs must be numeric"


def test_read_npz_reads_every_numeric_kind(tmp_path):
    arrays = {"b": np.array([True]), "i": np.array([-1], np.int8), "u": np.array([1], np.uint16),
              "f": np.array([0.5], np.float16), "c": np.array([1j], np.complex64)}
    np.savez(tmp_path / "a.npz", **arrays)
    got = inputs.read_npz(tmp_path / "a.npz")
    assert sorted(got) == sorted(arrays) and all(got[k].dtype == v.dtype and got[k].tolist() == v.tolist()
                                                 for k, v in arrays.items())


def test_read_npz_counts_array_bytes_from_the_headers_against_the_limit(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=np.zeros(100, np.float32), b=np.zeros(100, np.float32))  # 400 + 400 bytes
    assert sorted(inputs.read_npz(path, limit=800)) == ["a", "b"]
    with pytest.raises(InputError) as info:
        inputs.read_npz(path, limit=799)
    assert str(info.value) == (f"{path}: holds 0.0 MiB of array data; inputs are limited to 0 MiB "
                               "(about 9 rows of 20 float32)")
    from tf_parity_export.models import ArtifactError

    with pytest.raises(ArtifactError, match=r"^toy: cases\.npz: holds 0\.0 MiB"):  # the caller's error type and label
        inputs.read_npz(path, limit=799, error=ArtifactError, label="toy: cases.npz")


def test_read_npz_refuses_what_the_zip_directory_says_inflates_too_far_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, a=np.zeros(2**20, np.uint8))  # 1 MiB inflated, a few KiB on disk
    assert path.stat().st_size < 10_000
    with pytest.raises(InputError) as info:
        inputs.read_npz(path, limit=2**19)
    assert str(info.value) == (f"{path}: inflates to 1.0 MiB; inputs are limited to 0 MiB of array data "
                               f"(about {2**19 // 80:,} rows of 20 float32)")
    limit = 2**20 - 1024 + 200  # the directory's size is within limit + 1024 per member (the .npy header)...
    with pytest.raises(InputError, match=r"holds 1\.0 MiB of array data"):  # ...but the header's shape is not
        inputs.read_npz(path, limit=limit)
    assert inputs.read_npz(path, limit=2**20)["a"].size == 2**20
    assert inputs.MAX_INPUT_BYTES == 80 * 2**20 and inputs.MAX_MEMBERS == 64


def test_read_npz_refuses_too_many_members_duplicates_and_foreign_members(tmp_path):
    import zipfile

    path = tmp_path / "a.npz"
    np.savez(path, **{f"a{i}": np.zeros(1) for i in range(inputs.MAX_MEMBERS)})
    assert len(inputs.read_npz(path)) == inputs.MAX_MEMBERS
    np.savez(path, **{f"a{i}": np.zeros(1) for i in range(inputs.MAX_MEMBERS + 1)})
    with pytest.raises(InputError) as info:
        inputs.read_npz(path)
    assert str(info.value) == f"{path}: holds 65 arrays; an input .npz holds at most 64"
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros(2, np.float32))
    with zipfile.ZipFile(path, "w") as z:
        z.write(npy, "x.npy")
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.write(npy, "x.npy")
    with pytest.raises(InputError) as info:
        inputs.read_npz(path)
    assert str(info.value) == f"{path}: holds two arrays under one name; refusing the ambiguity"
    with zipfile.ZipFile(path, "w") as z:
        z.write(npy, "x.npy")
        z.writestr("notes.txt", "hi")
    with pytest.raises(InputError) as info:
        inputs.read_npz(path)
    assert str(info.value) == f"{path}: member 'notes.txt' is not an .npy array"


def test_read_npz_reads_npy_format_2_headers(tmp_path):
    import zipfile

    npy = tmp_path / "x.npy"
    with npy.open("wb") as f:
        np.lib.format.write_array(f, np.arange(3, dtype=np.float32), version=(2, 0))
    with zipfile.ZipFile(tmp_path / "a.npz", "w") as z:
        z.write(npy, "x.npy")
    assert inputs.read_npz(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]


def test_a_truncated_npz_is_one_line_and_names_the_label(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros(1000, np.float32))
    path.write_bytes(path.read_bytes()[:500])
    from tf_parity_export.models import ArtifactError

    with pytest.raises(ArtifactError) as info:
        inputs.read_npz(path, error=ArtifactError, label="toy: cases.npz")
    assert str(info.value).startswith("toy: cases.npz: not a readable .npz file (") and "\n" not in str(info.value)
    assert str(info.value).endswith("; re-export")


def test_coverage_and_boundary_targets_are_on_the_right_side_of_each_threshold():
    """FancyMLP halves while norm > 1 and scales when norm < 0.8 (models/fancy_mlp.py)."""
    t = inputs.COVERAGE_TARGETS
    assert t["loop0_scaled"] < 0.8 < t["loop0_kept"] <= 1
    assert 1 < t["loop1_scaled"] / 2 * 2 and 1 < t["loop1_scaled"] <= 2 and t["loop1_scaled"] / 2 < 0.8
    assert 1 < t["loop1_kept"] <= 2 and 0.8 < t["loop1_kept"] / 2
    assert t["loop12_scaled"] / 2**12 < 0.8 < t["loop12_kept"] / 2**12 <= 1
    assert 2**11 < t["loop12_scaled"] and 2**11 < t["loop12_kept"]
    assert inputs.BOUNDARY_TARGETS == {"boundary_loop": 1.0, "boundary_branch": 1.6}
    assert inputs.BOUNDARY_MARGIN == 1e-4


def test_unreadable_npz_messages_name_the_problem_exactly(tmp_path):
    path = tmp_path / "mine.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError) as info:
        inputs.read_npz(path)
    assert str(info.value) == f"{path}: not a readable .npz file (File is not a zip file)"  # a user's file: no re-export
    from tf_parity_export.models import ArtifactError

    with pytest.raises(ArtifactError) as info:
        inputs.read_npz(path, error=ArtifactError, label="toy: cases.npz")
    assert str(info.value) == "toy: cases.npz: not a readable .npz file (File is not a zip file); re-export"


def test_an_error_without_a_message_is_named_by_its_type(tmp_path):
    """A member whose zip directory promises more bytes than the file holds: zipfile raises a bare EOFError."""
    import io
    import struct
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(2000, np.float32))
    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("x.npy", buf.getvalue()[:300])
    data = bytearray(path.read_bytes())
    struct.pack_into("<II", data, data.rfind(b"PK\x01\x02") + 20, 9000, 9000)  # compressed and file size
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        inputs.read_npz(path)
    assert str(info.value) == f"{path}: not a readable .npz file (EOFError)"


def test_the_directory_limit_allows_1024_header_bytes_per_member_and_no_more(tmp_path):
    import zipfile

    path = tmp_path / "a.npz"
    np.savez(path, a=np.zeros(1000, np.float32), b=np.zeros(1000, np.float32))
    declared = sum(i.file_size for i in zipfile.ZipFile(path).infolist())  # 2 x (4000 + a 128-byte header)
    with pytest.raises(InputError, match=r": inflates to "):
        inputs.read_npz(path, limit=declared - 2049)
    with pytest.raises(InputError, match=r": holds 0\.0 MiB of array data"):  # past the directory, caught by the headers
        inputs.read_npz(path, limit=declared - 2048)
    assert sorted(inputs.read_npz(path, limit=8000)) == ["a", "b"]


def test_limit_messages_give_mib_and_rows(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=np.zeros(3 * 2**20, np.uint8))
    with pytest.raises(InputError) as info:
        inputs.read_npz(path, limit=2 * 2**20)
    assert str(info.value) == (f"{path}: inflates to 3.0 MiB; inputs are limited to 2 MiB of array data "
                               "(about 26,214 rows of 20 float32)")
    with pytest.raises(InputError) as info:
        inputs.read_npz(path, limit=3 * 2**20 - 1)
    assert str(info.value) == (f"{path}: holds 3.0 MiB of array data; inputs are limited to 3 MiB "
                               "(about 39,321 rows of 20 float32)")


def test_load_npz_validates_arrays_already_read_without_reading_the_file_again(tmp_path):
    case = inputs.load_npz(tmp_path / "gone.npz", SPEC, dict(GOOD))
    assert case.name == "user:gone.npz" and case.kind == "user" and sorted(case.feed) == ["k", "x"]


def test_random_values_keep_each_inputs_dtype_and_range():
    spec = ModelSpec("ids", "a:b", "s", (TensorSig("ids", (None, 5), "int32", range=(3, 7)),
                                         TensorSig("flag", (None, 2), "bool"),
                                         TensorSig("w", (None, 4), "float64", range=(-2.0, -1.0)),
                                         TensorSig("x", (None, 3))), (TensorSig("y", (None, 1)),))
    for case in inputs.random_cases(spec):
        ids, flag, w, x = (case.feed[k] for k in ("ids", "flag", "w", "x"))
        assert ids.dtype == np.int32 and ids.min() >= 3 and ids.max() < 7
        assert flag.dtype == np.bool_ and w.dtype == np.float64 and x.dtype == np.float32
        assert w.min() >= -2.0 and w.max() < -1.0 and x.min() >= 0.0 and x.max() < 1.0
        inputs.validate_feed(spec, case.feed, case.name)  # what the random cases make, the check takes
    ids = np.concatenate([c.feed["ids"].ravel() for c in inputs.random_cases(spec, (200,))])
    assert set(ids.tolist()) == {3, 4, 5, 6}  # every id of the range, and only those
    # the seed models' inputs keep their bits: uniform [0, 1) float32, drawn as before ranges existed
    rng = np.random.default_rng([inputs.INPUT_SEED, 2])
    assert np.array_equal(inputs.random_cases(spec, (2,))[0].feed["ids"],
                          rng.integers(3, 7, size=(2, 5), dtype=np.int32))


def test_an_integer_input_without_a_range_cannot_be_drawn():
    spec = ModelSpec("ids", "a:b", "s", (TensorSig("ids", (None, 5), "int64"),), (TensorSig("y", (None, 1)),))
    with pytest.raises(InputError, match=r"^input 'ids' is int64 and has no range; declare "):
        inputs.random_cases(spec)


@pytest.mark.parametrize("values,ok", [([[3, 6]], True), ([[2, 6]], False), ([[3, 7]], False)])
def test_integer_inputs_outside_their_range_are_refused(values, ok):
    spec = ModelSpec("ids", "a:b", "s", (TensorSig("ids", (None, 2), "int32", range=(3, 7)),), (TensorSig("y", (None,)),))
    feed = {"ids": np.array(values, np.int32)}
    if ok:
        inputs.validate_feed(spec, feed, "mine.npz")
        return
    with pytest.raises(InputError, match=r"^mine.npz: 'ids' holds values in \[\d, \d\], outside its range \[3, 7\)$"):
        inputs.validate_feed(spec, feed, "mine.npz")
