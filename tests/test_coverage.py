"""Generic control-flow coverage on the ONNX graph (verify/coverage.py), with no probe, on the exported seeds.

The measurement on synthetic graphs (nested If and Loop) is in tests/unit/test_coverage_rules.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tf_parity_export.models import get_spec
from tf_parity_export.verify import layout
from tf_parity_export.verify.coverage import GraphCoverage, find_covering_inputs


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_graph_measurement_agrees_with_the_probe_case_by_case(report, name):
    """Every case: the Loop's trip count is the probe's iteration count, and
    the If took `then` exactly when the probe saw the scaling branch."""
    m = next(m for m in report.models if m.model == name)
    (loop,) = [s for s in m.graph_sites if s.op == "Loop"]
    (branch,) = [s for s in m.graph_sites if s.op == "If"]
    assert len(m.cases) == len(m.graph_paths) >= 11
    seen = set()
    for case in m.cases:
        probe, graph = case["path"], m.graph_paths[case["name"]]
        assert graph.trips[loop.label] == [probe["iterations"]], case["name"]
        took = "then" if probe["branch"] == "scaled" else "else"
        assert graph.branches[branch.label] == {"then": int(took == "then"), "else": int(took == "else")}
        assert (graph.margin < 1e-4) == (case["kind"] == "boundary"), case["name"]
        seen.add((min(probe["iterations"], 2), took))
    assert seen == {(i, b) for i in (0, 1, 2) for b in ("then", "else")}  # every combination was compared


@pytest.mark.parametrize("name", ["fancy_mlp", "chimera"])
def test_generic_search_covers_the_seed_models_without_their_probes(artifacts, name):
    """No probe: magnitudes, signs and gradient steps on the compared values find every
    branch and loop count class (chimera's zero-iteration loop needs the descent)."""
    onnx_path = artifacts / name / layout.ONNX
    found, missing = find_covering_inputs(get_spec(name), onnx_path)
    assert missing == []
    cov = GraphCoverage(onnx_path)
    paths = [cov.trace(feed) for feed in found.values()]
    (loop,) = [s for s in cov.sites if s.op == "Loop"]
    (branch,) = [s for s in cov.sites if s.op == "If"]
    assert {t for p in paths for t in p.hits(loop)} == {"0", "1", "many"}
    assert {t for p in paths for t in p.hits(branch)} == {"then", "else"}
    assert all(p.margin >= 1e-4 for p in paths)  # no boundary case is offered as covering


def test_unreachable_branch_is_named_by_node_and_path(tmp_path):
    """sum(x*x) + 1 < 0.5 never holds: the search says so, naming the node and where it sits."""
    inner = helper.make_graph([helper.make_node("Identity", ["s"], ["r"])], "b", [],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [])])
    other = helper.make_graph([helper.make_node("Neg", ["s"], ["q"])], "c", [],
                              [helper.make_tensor_value_info("q", TensorProto.FLOAT, [])])
    graph = helper.make_graph([
        helper.make_node("Mul", ["x", "x"], ["xx"]),
        helper.make_node("ReduceSum", ["xx"], ["s0"], keepdims=0),
        helper.make_node("Add", ["s0", "one"], ["s"]),
        helper.make_node("Less", ["s", "half"], ["small"]),
        helper.make_node("If", ["small"], ["y"], then_branch=inner, else_branch=other, name="If_never"),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                     helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    from tf_parity_export.models import ModelSpec, TensorSig

    spec = ModelSpec("never", "a:b", "s", (TensorSig("x", (None, 3)),), (TensorSig("y", ()),))
    found, missing = find_covering_inputs(spec, tmp_path / "m.onnx")
    assert missing == ["If If_never took then"]
    assert len(found) == 1
