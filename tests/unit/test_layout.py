"""verify/layout.py on synthetic model folders: the card, hashes, confinement, external data."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.models import ArtifactError, UserError
from tf_parity_export.verify import layout

F, B, I64 = TensorProto.FLOAT, TensorProto.BOOL, TensorProto.INT64
REQUIRED = (layout.ONNX, layout.WEIGHTS, f"{layout.SAVED_MODEL}/saved_model.pb")


def _folder(tmp_path, extra: dict[str, bytes] | None = None):
    """A model folder with the required files and a card listing every file with its hash."""
    folder = tmp_path / "toy"
    files = {layout.ONNX: _onnx_bytes(), layout.WEIGHTS: b"weights", f"{layout.SAVED_MODEL}/saved_model.pb": b"sm",
             **(extra or {})}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    card = {"schema": layout.SCHEMA_VERSION, "files": layout.hash_tree(folder)}
    (folder / layout.CARD).write_text(json.dumps(card))
    return folder, card


def _onnx_bytes(model=None) -> bytes:
    if model is None:
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", F, [2])], [helper.make_tensor_value_info("y", F, [2])],
                                  [numpy_helper.from_array(np.ones(2, np.float32), "w")])
        model = helper.make_model(graph)
    return model.SerializeToString()


def test_a_complete_folder_passes(tmp_path):
    folder, card = _folder(tmp_path)
    assert layout.read_card(folder, "toy") == card
    layout.check_files(folder, "toy", card)
    layout.check_onnx_external_data(folder, "toy", card)


def test_hash_tree_hashes_every_file_but_the_card_by_posix_path(tmp_path):
    folder, card = _folder(tmp_path, {"a/b/c.bin": b"abc"})
    assert sorted(card["files"]) == sorted([*REQUIRED, "a/b/c.bin"])
    assert card["files"]["a/b/c.bin"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert layout.sha256(folder / "a/b/c.bin") == card["files"]["a/b/c.bin"]


def test_sha256_reads_big_files_in_blocks(tmp_path):
    import hashlib

    data = os.urandom((1 << 20) * 2 + 5)
    (tmp_path / "big").write_bytes(data)
    assert layout.sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("required", REQUIRED)
def test_a_required_file_missing_from_the_cards_list_is_refused(tmp_path, required):
    folder, card = _folder(tmp_path)
    del card["files"][required]
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == f"toy: card.json does not list {required}; re-export with `export-models toy`"


def test_a_listed_file_that_is_missing_is_refused(tmp_path):
    folder, card = _folder(tmp_path)
    (folder / layout.WEIGHTS).unlink()
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == "toy: model.weights.h5 is missing (listed in card.json); re-export with `export-models toy`"


def test_a_listed_folder_is_not_a_file(tmp_path):
    folder, card = _folder(tmp_path)
    (folder / "sub").mkdir()
    card["files"]["sub"] = "0" * 64
    with pytest.raises(ArtifactError, match="toy: sub is missing"):
        layout.check_files(folder, "toy", card)


def test_a_changed_byte_is_refused(tmp_path):
    folder, card = _folder(tmp_path)
    (folder / f"{layout.SAVED_MODEL}/saved_model.pb").write_bytes(b"sM")
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == ("toy: saved_model/saved_model.pb changed since export (sha256 mismatch); "
                               "re-export with `export-models toy`")


@pytest.mark.parametrize("bad", ["../toy2/model.onnx", "/etc/passwd", "saved_model/../../x", "a\\..\\..\\x", ".."])
def test_card_paths_outside_the_folder_are_refused_before_reading(tmp_path, bad):
    folder, card = _folder(tmp_path)
    (tmp_path / "toy2").mkdir()
    (tmp_path / "toy2" / "model.onnx").write_bytes(b"x")
    card["files"] = {bad: "0" * 64, **card["files"]}
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == f"toy: card.json lists {bad!r}, a path outside the model folder; refusing it"


def test_card_problems_are_one_line_each(tmp_path):
    folder, _ = _folder(tmp_path)
    with pytest.raises(ArtifactError, match=r"^toy: no artifact folder at .*nowhere; run `export-models toy`$"):
        layout.read_card(tmp_path / "nowhere", "toy")
    (folder / layout.CARD).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"^toy: .*card\.json is unreadable \(.*\); re-export with `export-models toy`$"):
        layout.read_card(folder, "toy")
    for bad in ([], {"schema": layout.SCHEMA_VERSION - 1, "files": {}}, {"schema": layout.SCHEMA_VERSION, "files": []},
                {"schema": layout.SCHEMA_VERSION}):
        (folder / layout.CARD).write_text(json.dumps(bad))
        with pytest.raises(ArtifactError, match=rf"^toy: .*card\.json is not a schema-{layout.SCHEMA_VERSION} card; "
                                                r"re-export with `export-models toy`$"):
            layout.read_card(folder, "toy")
    (folder / layout.CARD).unlink()
    with pytest.raises(ArtifactError, match=r"^toy: .*card\.json is missing; re-export with `export-models toy`$"):
        layout.read_card(folder, "toy")


# --- external data -------------------------------------------------------------------------------

def _external(tensor, location):
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="offset", value="0")
    if location is not None:
        tensor.external_data.add(key="location", value=location)


def _subgraph_model(where: str, location):
    """A model whose only external tensor sits in a Loop body, an If branch, a Constant or a tensors list."""
    init = numpy_helper.from_array(np.ones(2, np.float32), "w_inner")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["x_in", "w_inner"], ["x_out"])],
        "body", [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cond_in", B, []),
                 helper.make_tensor_value_info("x_in", F, [2])],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("x_out", F, [2])],
        initializer=[init] if where == "loop" else [])
    then = helper.make_graph([helper.make_node("Add", ["h", "w_inner"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F, [2])], initializer=[init] if where == "if" else [])
    other = helper.make_graph([helper.make_node("Identity", ["h"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", F, [2])])
    if where in ("loop", "if"):
        for g in (body, then):
            for t in g.initializer:
                _external(t, location)
        if where == "loop":
            then.initializer.append(init)
        else:
            body.initializer.append(init)
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["h"], body=body),  # copies the graphs
             helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)]
    if where == "constant":
        const = numpy_helper.from_array(np.ones(2, np.float32), "c")
        _external(const, location)
        nodes.append(helper.make_node("Constant", [], ["c_out"], value=const))
    if where == "graphs":  # a list-of-graphs attribute (no standard op has one; a custom op may)
        const = numpy_helper.from_array(np.ones(2, np.float32), "c")
        _external(const, location)
        inner = helper.make_graph([], "inner", [], [], initializer=[const])
        node = helper.make_node("Custom", [], ["c_out"], domain="example")
        node.attribute.append(helper.make_attribute("branches", [inner]))
        nodes.append(node)
    if where == "tensors":
        const = numpy_helper.from_array(np.ones(2, np.float32), "c")
        _external(const, location)
        node = helper.make_node("Custom", [], ["c_out"], domain="example")
        node.attribute.append(helper.make_attribute("consts", [const]))
        nodes.append(node)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2]),
                                           helper.make_tensor_value_info("flag", B, [])],
                              [helper.make_tensor_value_info("y", F, [2])],
                              [numpy_helper.from_array(np.int64(1), "M")])
    return helper.make_model(graph)


WHERE = ["loop", "if", "constant", "tensors", "graphs"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("location", ["../../secret.bin", "/etc/passwd", "a\\b.bin", "C:evil.bin", "", None],
                         ids=["dotdot", "absolute", "backslash", "drive", "empty", "absent"])
def test_external_data_outside_the_folder_is_refused_anywhere_in_the_graph(tmp_path, where, location):
    folder, card = _folder(tmp_path, {layout.ONNX: _onnx_bytes(_subgraph_model(where, location))})
    name = "c" if where in ("constant", "tensors", "graphs") else "w_inner"
    with pytest.raises(ArtifactError) as info:
        layout.check_onnx_external_data(folder, "toy", card)
    assert str(info.value) == (f"toy: model.onnx tensor {name!r} points to external data at {location or ''!r}, "
                               "outside the model folder; refusing it")


@pytest.mark.parametrize("where", WHERE)
def test_external_data_that_the_card_does_not_list_is_refused(tmp_path, where):
    folder, card = _folder(tmp_path, {layout.ONNX: _onnx_bytes(_subgraph_model(where, "data/w.bin"))})
    name = "c" if where in ("constant", "tensors", "graphs") else "w_inner"
    with pytest.raises(ArtifactError) as info:
        layout.check_onnx_external_data(folder, "toy", card)
    assert str(info.value) == (f"toy: model.onnx tensor {name!r} reads 'data/w.bin', which card.json does not list; "
                               "refusing it")


@pytest.mark.parametrize("where", WHERE)
def test_external_data_listed_in_the_card_is_accepted(tmp_path, where):
    folder, card = _folder(tmp_path, {layout.ONNX: _onnx_bytes(_subgraph_model(where, "data/w.bin")),
                                      "data/w.bin": b"\0" * 8})
    layout.check_onnx_external_data(folder, "toy", card)
    same = _onnx_bytes(_subgraph_model(where, "./data/w.bin"))  # the same file, spelled differently
    (folder / layout.ONNX).write_bytes(same)
    layout.check_onnx_external_data(folder, "toy", card)


def test_unparseable_onnx_is_one_line_before_external_data(tmp_path):
    folder, card = _folder(tmp_path, {layout.ONNX: b"\xff\xff garbage"})
    with pytest.raises(ArtifactError, match=r"^toy: model\.onnx cannot be parsed \(DecodeError\)$"):
        layout.check_onnx_external_data(folder, "toy", card)


# --- atomic JSON -----------------------------------------------------------------------------------

def test_write_json_is_strict_complete_and_keeps_the_umask(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmp"))  # the temporary goes beside the target
    path = tmp_path / "sub" / "deeper" / "report.json"
    layout.write_json(path, {"b": 1, "a": [1.5]}, sort_keys=True)
    assert path.read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    layout.write_json(path, {"b": 1, "a": 2})
    assert list(json.loads(path.read_text())) == ["b", "a"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~layout.umask()
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
    with pytest.raises(ValueError):
        layout.write_json(path, {"x": float("nan")})
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # a failed write leaves nothing
    assert json.loads(path.read_text()) == {"b": 1, "a": 2}


def test_umask_is_read_without_changing_it():
    before = os.umask(0o027)
    try:
        assert layout.umask() == 0o027 and layout.umask() == 0o027
    finally:
        os.umask(before)


def test_write_json_into_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError) as info:
        layout.write_json(blocker / "report.json", {})
    assert str(info.value).startswith(f"{blocker / 'report.json'}: cannot write here (")
    assert "\n" not in str(info.value)
