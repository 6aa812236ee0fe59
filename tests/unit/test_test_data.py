"""verify/test_data.py: ONNX test data sets written and read back; wrong or broken files refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tf_parity_export.models import ArtifactError, ModelSpec, TensorSig
from tf_parity_export.verify.test_data import read_sets, set_dir, write_set

SPEC = ModelSpec(name="toy", builder="none:none", summary="",
                 inputs=(TensorSig("a", (None, 2)), TensorSig("b", (None, 3))),
                 outputs=(TensorSig("y", (None, 2)), TensorSig("z", (None, 1))))
FEED = {"a": np.array([[1, 2]], np.float32), "b": np.array([[3, 4, 5]], np.float32)}
OUT = {"y": np.array([[0.5, -1]], np.float32), "z": np.array([[7]], np.float32)}


def _card(folder, *sets):
    """A card naming `sets` and listing (hashing) every file now in `folder`, as the exporter writes it."""
    from tf_parity_export.verify import layout

    return {"files": layout.hash_tree(folder),
            "test_data": [{"set": s, "case": f"case{i}", "kind": "coverage", "path": {"branch": "kept"} if i else None}
                          for i, s in enumerate(sets)]}


def test_sets_round_trip_in_the_onnx_layout(tmp_path):
    assert write_set(tmp_path, 0, SPEC, FEED, OUT) == "test_data_set_0" == set_dir(0)
    assert write_set(tmp_path, 1, SPEC, FEED, {"y": OUT["y"] * 2, "z": OUT["z"]}) == "test_data_set_1"
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pb"))
    assert files == [f"test_data_set_{i}/{kind}_{j}.pb" for i in (0, 1) for kind in ("input", "output") for j in (0, 1)]
    tensor = onnx.TensorProto.FromString((tmp_path / "test_data_set_0" / "input_1.pb").read_bytes())
    assert tensor.name == "b" and np.array_equal(numpy_helper.to_array(tensor), FEED["b"])
    first, second = read_sets(tmp_path, SPEC, _card(tmp_path, "test_data_set_0", "test_data_set_1"))
    assert (first.case.name, first.case.kind, first.path) == ("case0", "coverage", None)
    assert second.path == {"branch": "kept"}
    assert {k: v.tolist() for k, v in first.case.feed.items()} == {k: v.tolist() for k, v in FEED.items()}
    assert {k: v.tolist() for k, v in first.expected.items()} == {k: v.tolist() for k, v in OUT.items()}
    assert second.expected["y"].tolist() == (OUT["y"] * 2).tolist()


def test_a_card_without_test_data_reads_none(tmp_path):
    assert read_sets(tmp_path, SPEC, {}) == []


@pytest.mark.parametrize("rel, name, want", [
    ("input_0.pb", "b", "a"), ("output_1.pb", "y", "z"),
])
def test_a_tensor_under_the_wrong_name_is_refused(tmp_path, rel, name, want):
    write_set(tmp_path, 0, SPEC, FEED, OUT)
    path = tmp_path / "test_data_set_0" / rel
    path.write_bytes(numpy_helper.from_array(np.zeros((1, 2), np.float32), name).SerializeToString())
    with pytest.raises(ArtifactError) as info:
        read_sets(tmp_path, SPEC, _card(tmp_path, "test_data_set_0"))
    assert str(info.value) == f"toy: test_data_set_0/{rel} holds {name!r}, expected {want!r}"


@pytest.mark.parametrize("damage, why", [("garbage", "DecodeError"), ("missing", "FileNotFoundError")])
def test_unreadable_test_data_is_one_line(tmp_path, damage, why):
    write_set(tmp_path, 0, SPEC, FEED, OUT)
    card = _card(tmp_path, "test_data_set_0")
    path = tmp_path / "test_data_set_0" / "output_0.pb"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(ArtifactError) as info:
        read_sets(tmp_path, SPEC, card)
    assert str(info.value) == f"toy: test_data_set_0/output_0.pb is unreadable ({why})"


@pytest.mark.parametrize("rel", ["input_1.pb", "output_0.pb"])
def test_test_data_the_card_does_not_hash_is_never_read(tmp_path, rel):
    write_set(tmp_path, 0, SPEC, FEED, OUT)
    card = _card(tmp_path, "test_data_set_0")
    del card["files"][f"test_data_set_0/{rel}"]
    with pytest.raises(ArtifactError) as info:
        read_sets(tmp_path, SPEC, card)
    assert str(info.value) == (f"toy: card.json names test data 'test_data_set_0/{rel}' but does not list (hash) it; "
                               "re-export with `export-models toy`")


def test_writing_into_an_existing_set_is_refused(tmp_path):
    write_set(tmp_path, 0, SPEC, FEED, OUT)
    with pytest.raises(FileExistsError):
        write_set(tmp_path, 0, SPEC, FEED, OUT)


def test_the_cap_on_stored_test_data_is_inclusive_and_names_the_model(monkeypatch):
    from tf_parity_export.models import PluginError
    from tf_parity_export.verify import test_data

    assert test_data.MAX_TEST_DATA_BYTES == 64 * 2**20
    test_data.check_test_data_size(SPEC, test_data.MAX_TEST_DATA_BYTES, "x")  # exactly the cap fits
    with pytest.raises(PluginError) as info:
        test_data.check_test_data_size(SPEC, test_data.MAX_TEST_DATA_BYTES + 1, "the sets would")
    assert str(info.value) == ("toy: the sets would take 64.0 MiB, over the cap of 64.0 MiB on a model's stored test "
                               "data (inputs [[None, 2], [None, 3]]); declare smaller inputs")
    monkeypatch.setattr(test_data, "MAX_TEST_DATA_BYTES", 100)
    with pytest.raises(PluginError, match=r"take 1048575 bytes, over the cap of 100 bytes"):
        test_data.check_test_data_size(SPEC, 2**20 - 1, "x")
    with pytest.raises(PluginError, match=r"take 1.0 MiB, over"):
        test_data.check_test_data_size(SPEC, 2**20, "x")
    with pytest.raises(PluginError, match=r"take 101 bytes, over the cap of 100 bytes"):
        test_data.check_test_data_size(SPEC, 101, "x")


def test_the_random_inputs_are_sized_from_the_declared_shapes():
    from tf_parity_export.verify.test_data import random_data_bytes

    assert random_data_bytes(SPEC) == (2 + 3) * 4 * (1 + 2 + 7)  # float32, batches 1, 2 and 7
    wide = ModelSpec(name="w", builder="a:b", summary="", inputs=(TensorSig("x", (None, 4, 5), "float64"),
                                                                   TensorSig("s", (None,), "int32")),
                     outputs=(TensorSig("y", ()),))
    assert random_data_bytes(wide) == (4 * 5 * 8 + 4) * 10
    open_dim = ModelSpec(name="o", builder="a:b", summary="", inputs=(TensorSig("x", (None, None, 3)),),
                         outputs=(TensorSig("y", ()),))
    assert random_data_bytes(open_dim) == 3 * 4 * 10  # a dimension left open counts as 1: the least it can be
