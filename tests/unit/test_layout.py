"""verify/layout.py on synthetic model folders: the card, hashes, confinement, external data."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tf_parity_export.models import ArtifactError, UserError
from tf_parity_export.verify import layout

F, B, I64 = TensorProto.FLOAT, TensorProto.BOOL, TensorProto.INT64
REQUIRED = (layout.ONNX, layout.TFLITE, layout.WEIGHTS, f"{layout.SAVED_MODEL}/saved_model.pb")
FIX = "re-export with `export-models toy`"


def _folder(tmp_path, extra: dict[str, bytes] | None = None):
    """A model folder with the required files, a card listing every file with its hash, and
    the manifest.json entry recording the card and the ONNX file, as `export-models` writes them."""
    folder = tmp_path / "toy"
    files = {layout.ONNX: _onnx_bytes(), layout.TFLITE: b"tflite", layout.WEIGHTS: b"weights",
             f"{layout.SAVED_MODEL}/saved_model.pb": b"sm", **(extra or {})}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    card = {"schema": layout.SCHEMA_VERSION, "files": layout.hash_tree(folder)}
    _sign(folder, card)
    return folder, card


def _sign(folder, card, **entry):
    """Write the card and record it (and model.onnx) in the manifest, as an export does."""
    layout.write_json(folder / layout.CARD, card)
    record = {"card_sha256": layout.sha256(folder / layout.CARD), "onnx_sha256": layout.sha256(folder / layout.ONNX)}
    layout.write_json(folder.parent / layout.INDEX, {"models": {folder.name: {**record, **entry}}})


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
    layout.check_manifest(tmp_path, "toy")
    layout.check_onnx_external_data(folder, "toy", card)
    assert layout.check_folder(tmp_path, "toy") == card
    assert layout.check_folder(str(tmp_path), "toy") == card


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
    """Gone from the folder and from the card alike: every hash matches, yet the model is incomplete."""
    folder, card = _folder(tmp_path)
    del card["files"][required]
    (folder / required).unlink()
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == f"toy: card.json does not list {required}; re-export with `export-models toy`"


@pytest.mark.parametrize("rel", [layout.ONNX, "extra.bin", "saved_model/variables/extra", "test_data_set_9/input_0.pb",
                                 "extra.json", "saved_model/fingerprint.json", "test_data_set_0/x.json",
                                 "card.json.bak", "sub/card.json"])
def test_a_file_the_card_does_not_list_is_refused_by_name(tmp_path, rel):
    folder, card = _folder(tmp_path)
    if rel == layout.ONNX:
        del card["files"][rel]  # still in the folder, but no longer hashed
    else:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"unhashed")
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == (f"toy: {rel} is in the model folder but not listed in card.json (unhashed); "
                               f"remove it or {FIX}")


def test_the_first_unlisted_file_is_named_and_odd_names_stay_on_one_line(tmp_path):
    folder, card = _folder(tmp_path)
    (folder / "b").write_bytes(b"")
    (folder / "a\nb").write_bytes(b"")
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value).startswith("toy: 'a\\nb' is in the model folder but not listed")
    assert "\n" not in str(info.value)
    (folder / "a\nb").unlink()
    with pytest.raises(ArtifactError, match="^toy: b is in the model folder but not listed"):
        layout.check_files(folder, "toy", card)


@pytest.mark.parametrize("where", ["model.weights.h5", "saved_model/variables", "new", "d\nl"])
def test_a_symlink_anywhere_in_the_folder_is_refused(tmp_path, where):
    folder, card = _folder(tmp_path)
    outside = tmp_path / "outside"
    outside.write_bytes(b"weights")  # the same bytes: the hash alone would not notice
    target = folder / where
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    target.symlink_to(outside)
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    shown = where if where.isprintable() else repr(where)
    assert str(info.value) == f"toy: {shown} is a symlink; a model folder holds only regular files; refusing it"


def test_a_fifo_in_the_folder_is_refused_without_opening_it(tmp_path):
    folder, card = _folder(tmp_path)
    os.mkfifo(folder / "pipe")  # opening it to hash it would block forever
    with pytest.raises(ArtifactError) as info:
        layout.check_files(folder, "toy", card)
    assert str(info.value) == "toy: pipe is not a regular file; refusing it"
    os.unlink(folder / "pipe")
    os.mkfifo(folder / "p\tq")
    with pytest.raises(ArtifactError, match=r"^toy: 'p\\tq' is not a regular file; refusing it$"):
        layout.check_files(folder, "toy", card)


# --- manifest.json: the card recorded at export ---------------------------------------------------

def test_a_card_edited_and_re_signed_is_refused_by_the_manifest(tmp_path):
    folder, card = _folder(tmp_path)
    card["atol"] = 1.0  # a consistent card with every hash right, but not the one exported
    layout.write_json(folder / layout.CARD, card)
    layout.check_files(folder, "toy", card)
    with pytest.raises(ArtifactError) as info:
        layout.check_folder(tmp_path, "toy")
    assert str(info.value) == ("toy: card.json does not match manifest.json (sha256 mismatch: the card changed since "
                               f"export); {FIX}")


def test_an_onnx_file_other_than_the_recorded_one_is_refused(tmp_path):
    folder, card = _folder(tmp_path)
    index = json.loads((tmp_path / layout.INDEX).read_text())
    index["models"]["toy"]["onnx_sha256"] = "0" * 64
    layout.write_json(tmp_path / layout.INDEX, index)
    with pytest.raises(ArtifactError) as info:
        layout.check_manifest(tmp_path, "toy")
    assert str(info.value) == f"toy: model.onnx does not match manifest.json (sha256 mismatch); {FIX}"


def test_a_pending_entry_is_accepted_with_its_own_onnx_hash(tmp_path):
    """An export killed between recording the pending folder and renaming it leaves either card valid."""
    folder, card = _folder(tmp_path)
    now = {"card_sha256": layout.sha256(folder / layout.CARD), "onnx_sha256": layout.sha256(folder / layout.ONNX)}
    old = {"card_sha256": "1" * 64, "onnx_sha256": "2" * 64}
    layout.write_json(tmp_path / layout.INDEX, {"models": {"toy": {**old, "pending": now}}})
    layout.check_manifest(tmp_path, "toy")
    layout.write_json(tmp_path / layout.INDEX, {"models": {"toy": {**now, "pending": old}}})
    layout.check_manifest(tmp_path, "toy")
    layout.write_json(tmp_path / layout.INDEX, {"models": {"toy": {**old, "pending": {**now, "onnx_sha256": "3" * 64}}}})
    with pytest.raises(ArtifactError, match=r"^toy: model\.onnx does not match manifest\.json"):
        layout.check_manifest(tmp_path, "toy")
    for pending in (old, "not a dict", None):
        layout.write_json(tmp_path / layout.INDEX, {"models": {"toy": {**old, "pending": pending}}})
        with pytest.raises(ArtifactError, match=r"^toy: card\.json does not match manifest\.json"):
            layout.check_manifest(tmp_path, "toy")


@pytest.mark.parametrize("index, why", [
    (None, "missing"), ("{", "unreadable"), ([], "no entry"), ({"models": []}, "no entry"),
    ({"models": {"other": {}}}, "no entry"), ({"models": {"toy": "x"}}, "no entry"), ({}, "no entry"),
])
def test_a_missing_or_broken_manifest_is_one_line(tmp_path, index, why):
    _folder(tmp_path)
    path = tmp_path / layout.INDEX
    if index is None:
        path.unlink()
    elif isinstance(index, str):
        path.write_text(index)
    else:
        layout.write_json(path, index)
    with pytest.raises(ArtifactError) as info:
        layout.check_folder(tmp_path, "toy")
    message = {"missing": f"toy: {path} is missing, so card.json cannot be checked; {FIX}",
               "no entry": f"toy: {path} has no entry for toy; {FIX}"}.get(why)
    if message:
        assert str(info.value) == message
    else:
        assert str(info.value).startswith(f"toy: {path} is unreadable (") and str(info.value).endswith(f"); {FIX}")


def test_check_folder_checks_files_before_the_manifest_and_external_data_last(tmp_path):
    folder, card = _folder(tmp_path)
    (tmp_path / layout.INDEX).unlink()
    (folder / "extra").write_bytes(b"")
    with pytest.raises(ArtifactError, match="^toy: extra is in the model folder"):
        layout.check_folder(tmp_path, "toy")
    (folder / "extra").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        layout.check_folder(tmp_path, "toy")
    folder, card = _folder(tmp_path / "ext", {layout.ONNX: _onnx_bytes(_subgraph_model("loop", "../x.bin"))})
    with pytest.raises(ArtifactError, match="points to external data at '../x.bin'"):
        layout.check_folder(tmp_path / "ext", "toy")


# --- read_json, json_safe -------------------------------------------------------------------------

def test_read_json_reads_only_small_regular_utf8_files(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text('{"a": [1, 2.5]}')
    assert layout.read_json(path) == {"a": [1, 2.5]}
    link = tmp_path / "link.json"
    link.symlink_to(path)
    with pytest.raises(ValueError, match="^a symlink$"):
        layout.read_json(link)
    with pytest.raises(ValueError, match="^not a regular file$"):
        layout.read_json(tmp_path)
    with pytest.raises(FileNotFoundError):
        layout.read_json(tmp_path / "none.json")
    path.write_bytes(b'"\xff"')
    with pytest.raises(ValueError, match="^not UTF-8 text: invalid start byte$"):
        layout.read_json(path)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="^nested too deeply$"):
        layout.read_json(path)
    assert layout.MAX_JSON_BYTES == 16 * 2**20
    monkeypatch.setattr(layout, "MAX_JSON_BYTES", 4 * 2**20)
    path.write_text('"' + "x" * (4 * 2**20 - 2) + '"')  # exactly the limit
    assert len(layout.read_json(path)) == 4 * 2**20 - 2
    path.write_text('"' + "x" * (4 * 2**20 - 1) + '"')
    with pytest.raises(ValueError, match="^larger than 4 MiB$"):
        layout.read_json(path)


def test_json_safe_spells_out_non_finite_numbers_everywhere():
    data = {"a": [float("nan"), float("inf"), -np.inf, 1.5, np.float32(0.25)], "b": (np.int64(3), "s", None, True),
            "c": {"d": np.float64(-np.inf)}}
    safe = layout.json_safe(data)
    assert safe == {"a": ["NaN", "Infinity", "-Infinity", 1.5, 0.25], "b": [3, "s", None, True],
                    "c": {"d": "-Infinity"}}
    assert type(safe["b"][0]) is int and type(safe["a"][4]) is float and safe["b"][3] is True
    json.dumps(safe, allow_nan=False)


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
    layout.write_json(path, {"x": float("nan")})  # spelled out, so the file is strict JSON
    assert path.read_text() == '{\n  "x": "NaN"\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left beside it
    layout.write_json(path, {"b": 1, "a": 2})
    assert json.loads(path.read_text()) == {"b": 1, "a": 2}
    layout.write_text(path, "plain")
    assert path.read_text() == "plain" and [p.name for p in path.parent.iterdir()] == ["report.json"]


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
    assert str(info.value) == f"{blocker / 'report.json'}: cannot write here (File exists)"
    folder = tmp_path / "in-the-way"
    (folder / "report.json").mkdir(parents=True)  # a folder where the file goes: the temporary is removed
    with pytest.raises(UserError, match=r"report\.json: cannot write here \(.*\)$"):
        layout.write_text(folder / "report.json", "x")
    assert [p.name for p in folder.iterdir()] == ["report.json"]


# --- the card's fields -----------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"files": {"model.onnx": "0" * 63}}, "field \"files['model.onnx']\" must be a sha256 hex digest"),
    ({"files": {"model.onnx": "A" * 64}}, "field \"files['model.onnx']\" must be a sha256 hex digest"),
    ({"files": {"model.onnx": 5}}, "field \"files['model.onnx']\" must be a sha256 hex digest"),
    ({"seed": "1"}, "field 'seed' must be an integer in [0, 2**32)"),
    ({"seed": True}, "field 'seed' must be an integer in [0, 2**32)"),
    ({"seed": 1.0}, "field 'seed' must be an integer in [0, 2**32)"),
    ({"seed": -1}, "field 'seed' must be an integer in [0, 2**32)"),
    ({"seed": 2**32}, "field 'seed' must be an integer in [0, 2**32)"),
    ({"test_data": {}}, "field 'test_data' must be a list"),
    ({"test_data": ["x"]}, 'field \'test_data[0]\' must be an object with string "set", "case", "kind" and an object '
                           'or null "path"'),
] + [({"test_data": [{"set": "test_data_set_0", "case": "c", "kind": "random", "path": None, **{key: bad}}]},
      'field \'test_data[0]\' must be an object with string "set", "case", "kind" and an object or null "path"')
     for key, bad in [("set", 0), ("case", None), ("kind", 1), ("path", [])]])
def test_each_card_field_the_verifier_uses_is_type_checked(tmp_path, change, message):
    folder, card = _folder(tmp_path)
    card = {**card, **change}
    if "files" in change:
        card["files"] = {**layout.read_card(folder, "toy")["files"], **change["files"]}
    layout.write_json(folder / layout.CARD, card)
    with pytest.raises(ArtifactError) as info:
        layout.read_card(folder, "toy")
    assert str(info.value) == f"toy: card.json {message}; {FIX}"


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1])
def test_seeds_in_range_are_accepted(tmp_path, seed):
    folder, card = _folder(tmp_path)
    layout.write_json(folder / layout.CARD, {**card, "seed": seed, "test_data": [
        {"set": "test_data_set_0", "case": "c", "kind": "random", "path": {"a": 1}},
        {"set": "test_data_set_12", "case": "d", "kind": "coverage", "path": None}]})
    assert layout.read_card(folder, "toy")["seed"] == seed


@pytest.mark.parametrize("name", ["../elsewhere", "test_data_set_", "test_data_set_1/..", "data", "test_data_set_x"])
def test_a_test_data_set_outside_a_test_data_set_folder_is_refused(tmp_path, name):
    folder, card = _folder(tmp_path)
    layout.write_json(folder / layout.CARD, {**card, "test_data": [
        {"set": name, "case": "c", "kind": "random", "path": None}]})
    with pytest.raises(ArtifactError) as info:
        layout.read_card(folder, "toy")
    assert str(info.value) == (f"toy: card.json names test data set {name!r}, not a test_data_set_N folder inside the "
                               "model folder; refusing it")


def test_a_nul_in_a_card_path_is_refused(tmp_path):
    folder, card = _folder(tmp_path)
    card["files"]["a\0b"] = "0" * 64
    with pytest.raises(ArtifactError, match=r"lists 'a\\x00b', a path outside the model folder"):
        layout.check_files(folder, "toy", card)


def test_write_text_writes_a_named_temporary_beside_the_target_and_cleans_up_after_a_sweep(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(layout.os, "replace", replace)
    layout.write_text(path, "x")
    assert re.fullmatch(rf"\.report\.json\.tmp-{os.getpid()}-[0-9a-f]{{8}}", seen[0])

    def swept(src, dst):  # another export's lock swept the temporary away before the rename
        os.unlink(src)
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(layout.os, "replace", swept)
    with pytest.raises(UserError) as info:
        layout.write_text(path, "y")
    assert str(info.value) == f"{path}: cannot write here (No such file or directory)"
    assert path.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


# --- room for a file (HDF5 crashes on EFBIG instead of raising) -----------------------------------

def _fsize_soft_limit(soft: int):
    """Lower this process's own `ulimit -f` (a real setrlimit) for a `with` block, then restore it."""
    import contextlib
    import resource

    @contextlib.contextmanager
    def lowered():
        before = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, before[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, before)

    return lowered()


def test_check_room_refuses_what_the_file_size_limit_would_cut(tmp_path):
    with _fsize_soft_limit(4096):
        layout.check_room(tmp_path, 4096, "w.h5")  # exactly the limit fits
        with pytest.raises(UserError) as info:
            layout.check_room(tmp_path, 4097, "out/toy/w.h5")
    assert str(info.value) == ("out/toy/w.h5: needs up to 4097 bytes, over this process's file-size limit of 4096 "
                               "bytes (ulimit -f)")


def test_check_room_without_a_file_size_limit_checks_only_the_disk(tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY:
        pytest.skip(f"this process's hard file-size limit is {hard} bytes, not unlimited")
    with _fsize_soft_limit(resource.RLIM_INFINITY):
        layout.check_room(tmp_path, 1, "w.h5")  # RLIM_INFINITY is -1 here: never read as a tiny limit
        with pytest.raises(UserError, match=r"^w\.h5: needs up to 1099511627776000 bytes, only \d+ are free on its disk$"):
            layout.check_room(tmp_path, 2**50 * 1000 // 1024, "w.h5")


def test_check_room_refuses_more_than_the_free_space_of_the_folders_disk(tmp_path, monkeypatch):
    seen = []
    real = os.statvfs

    def statvfs(path):  # the real call, then a disk with 3 free blocks of 4096 bytes (12288 bytes)
        seen.append(path)
        st = real(path)
        return os.statvfs_result((st.f_bsize, 4096, st.f_blocks, st.f_bfree, 3, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(layout.os, "statvfs", statvfs)
    layout.check_room(tmp_path, 12288, "w.h5")  # exactly what is free fits
    assert seen == [tmp_path]
    with pytest.raises(UserError) as info:
        layout.check_room(tmp_path, 12289, "out/toy/w.h5")
    assert str(info.value) == "out/toy/w.h5: needs up to 12289 bytes, only 12288 are free on its disk"


def test_check_room_of_a_folder_it_cannot_stat_leaves_the_write_to_report(tmp_path):
    layout.check_room(tmp_path / "missing", 2**62, "w.h5")  # the write that follows gives the one-line error


def test_write_json_and_write_text_write_through_the_temporary_given(tmp_path, monkeypatch):
    path, temp = tmp_path / "report.json", tmp_path / ".report.json.tmp-recorded"
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(layout.os, "replace", lambda src, dst: seen.append(os.fspath(src)) or real_replace(src, dst))
    layout.write_json(path, {"a": 1}, temp=temp)
    layout.write_text(path, "plain", temp=str(temp))
    assert seen == [str(temp), str(temp)]
    assert path.read_text() == "plain" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_temporary_that_already_exists_is_neither_written_through_nor_removed(tmp_path):
    path, temp = tmp_path / "report.json", tmp_path / ".report.json.tmp-recorded"
    temp.write_text("someone else's")
    for write in (lambda: layout.write_json(path, {}, temp=temp), lambda: layout.write_text(path, "x", temp=temp)):
        with pytest.raises(UserError) as info:
            write()
        assert str(info.value) == f"{path}: cannot write here (File exists)"
    assert temp.read_text() == "someone else's" and not path.exists()


def test_write_json_refuses_a_non_finite_key_json_safe_cannot_spell_out(tmp_path):
    path = tmp_path / "report.json"
    with pytest.raises(ValueError, match=r"^Out of range float values are not JSON compliant"):
        layout.write_json(path, {float("nan"): 1})
    assert list(tmp_path.iterdir()) == []


def test_write_text_writes_utf8_whatever_the_locale(tmp_path):
    """A real process in the plain C locale, without UTF-8 mode: its default text encoding is ASCII."""
    path = tmp_path / "report.json"
    layout.write_text(tmp_path / "here.json", "caf\u00e9 \u2713")  # in this process too (mutmut maps tests by calls)
    assert (tmp_path / "here.json").read_bytes() == "caf\u00e9 \u2713".encode()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    staged = Path(layout.__file__).parents[2]
    if (staged / "tf_parity_export").is_dir():  # a staged copy (mutation testing): the child imports that one
        env["PYTHONPATH"] = os.fspath(staged)
    code = ("import sys, locale; from tf_parity_export.verify import layout; "
            "assert locale.getpreferredencoding(False).lower() in ('ansi_x3.4-1968', 'ascii'), locale.getpreferredencoding(False); "
            "layout.write_text(sys.argv[1], 'caf\\u00e9 \\u2713')")
    done = subprocess.run([sys.executable, "-c", code, os.fspath(path)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert path.read_bytes() == "caf\u00e9 \u2713".encode()


def test_a_deployment_format_the_converter_could_not_make_is_not_required(tmp_path):
    folder, card = _folder(tmp_path)
    (folder / layout.TFLITE).unlink()
    card = {**card, "files": layout.hash_tree(folder)}
    _sign(folder, card)
    with pytest.raises(ArtifactError, match=f"^toy: card.json does not list {layout.TFLITE}; {re.escape(FIX)}$"):
        layout.check_files(folder, "toy", layout.read_card(folder, "toy"))  # not said why: still required
    card["formats"] = {"litert": {"status": "unsupported", "reason": "'tf.MatrixDeterminant' op is neither ..."}}
    _sign(folder, card)
    checked = layout.read_card(folder, "toy")
    layout.check_files(folder, "toy", checked)
    assert layout.format_state(checked, "litert") == card["formats"]["litert"]
    assert layout.format_state({"files": {}}, "litert") == {"status": "ok"}  # a card that says nothing: made


@pytest.mark.parametrize("formats", [
    [], {"coreml": {"status": "ok"}}, {"litert": {"status": "fine"}}, {"litert": "ok"},
    {"litert": {"status": "unsupported", "reason": 3}}, {"litert": {"status": "ok", "static_batch": 2}},
])
def test_formats_of_the_wrong_shape_are_refused(tmp_path, formats):
    folder, card = _folder(tmp_path)
    _sign(folder, {**card, "formats": formats})
    with pytest.raises(ArtifactError, match=r"^toy: card.json field .*formats.* must be "):
        layout.read_card(folder, "toy")


def test_the_card_gives_each_input_the_range_the_export_took_from_the_model():
    from tf_parity_export.models import ModelSpec, TensorSig
    from tf_parity_export.verify.verifier import with_card_ranges

    spec = ModelSpec("t", "a:b", "s", (TensorSig("ids", (None, 3), "int32"), TensorSig("x", (None, 2), range=(0, 2))),
                     (TensorSig("y", (None, 1)),))
    card = {"signature": {"inputs": [{"name": "ids", "range": [0, 1000]}, {"name": "x", "range": [5, 6]}]}}
    got = with_card_ranges(spec, card)
    assert got.inputs[0].range == (0, 1000) and got.inputs[1].range == (0, 2)  # a declared range stands
    for bad in ([0], [3, 3], ["0", 9], None):
        assert with_card_ranges(spec, {"signature": {"inputs": [{"name": "ids", "range": bad}]}}).inputs[0].range is None


# --- what a report may replace, and the temporaries a killed writer left ----------------------------

def _gone_pid() -> int:
    """The id of a real process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_write_text_never_replaces_what_is_not_a_regular_file(tmp_path):
    """A symlink (to a file, to a FIFO, dangling), a FIFO (never opened: no hang) and a device stay.
    (No test points at /dev/null: a mutant of this check run as root once replaced the system's.)"""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "target").write_text("the user's")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "null").symlink_to(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name, kind in (("fifo", "a FIFO"), ("link", "a symlink"), ("null", "a symlink"), ("dangling", "a symlink")):
        with pytest.raises(UserError) as info:
            layout.write_text(tmp_path / name, "x")
        assert str(info.value) == (f"{tmp_path / name}: is {kind}; refusing to replace it (reports are written only "
                                   "as regular files: name the file itself)")
    # a character device (/dev/zero: only looked at, and unlike /dev/null never a report target in a test)
    with pytest.raises(UserError, match="^/dev/zero: is a device; refusing to replace it"):
        layout.check_target(Path("/dev/zero"))
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and (tmp_path / "target").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "fifo", "link", "null", "target"]
    for fine in ("target", "missing", "missing-dir/x"):  # a regular file, nothing, no folder yet: no objection
        layout.check_target(tmp_path / fine)


def test_check_target_names_a_socket_as_not_a_regular_file(tmp_path):
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))
        with pytest.raises(UserError, match=r"s: is not a regular file; refusing to replace it"):
            layout.check_target(tmp_path / "s")


def test_the_sweep_removes_only_a_gone_writers_temporaries_of_that_file(tmp_path):
    gone, alive = _gone_pid(), os.getpid()
    ours = [f".r.json.tmp-{gone}-0123abcd", f".r.json.tmp-{gone}-ffffffff"]
    others = [f".r.json.tmp-{alive}-0123abcd",  # a live writer's (this process)
              f".r.json.tmp-{gone}-0123abc", f".r.json.tmp-{gone}-0123abcde", f".r.json.tmp-{gone}-0123ABCD",
              f".r.jsonx.tmp-{gone}-0123abcd", f".x.r.json.tmp-{gone}-0123abcd", f"r.json.tmp-{gone}-0123abcd",
              f".r.json.tmp-{gone}-0123abcd.bak", f".r.json.tmp--{gone}-0123abcd", ".r.json.tmp-0-0123abcd",
              f".r.json.tmp-{2**80}-0123abcd"]
    for name in ours + others:
        (tmp_path / name).write_text("x")
    folder = tmp_path / f".r.json.tmp-{gone}-aaaaaaaa"  # our pattern, but a folder: not ours to remove
    folder.mkdir()
    link = tmp_path / f".r.json.tmp-{gone}-bbbbbbbb"  # and a symlink: we never write one
    link.symlink_to(tmp_path / "target")
    (tmp_path / "target").write_text("kept")
    assert sorted(layout.sweep_temporaries(tmp_path / "r.json")) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, folder.name, link.name, "target"])
    assert (tmp_path / "target").read_text() == "kept"
    assert layout.sweep_temporaries(tmp_path / "nowhere" / "r.json") == []  # no folder: nothing to do


def test_write_text_sweeps_before_it_writes(tmp_path):
    left = tmp_path / f".report.json.tmp-{_gone_pid()}-0123abcd"
    left.write_text("{")
    layout.write_text(tmp_path / "report.json", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_only_a_process_that_is_gone_is_taken_for_gone():
    # (no pid 0 or 1 here: a mutant sending a real signal would reach this process group, or init)
    assert layout._alive(os.getpid())
    assert not layout._alive(_gone_pid())
    assert layout._alive(2**80)  # too large to be any process's id: left alone


def test_asking_whether_a_writer_is_alive_sends_it_nothing():
    """Signal 0 checks; any other signal would reach the writer. The child takes SIGHUP's default
    (ending it) first: an ignored signal is inherited, and a test runner may ignore SIGHUP."""
    child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                              "signal.signal(signal.SIGHUP, signal.SIG_DFL); print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert layout._alive(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.2)
    finally:
        child.kill()
        child.wait()
