"""LiteRT's side: the interpreter keeps every intermediate (`experimental_preserve_all_tensors`).

LiteRT names a tensor after the TF ops it was converted from, joined with
';' when it fused several (`dense/MatMul;dense/Relu`), so its tensors are
matched by those names (`match.litert_candidates`), in the interpreter's
execution order. Running one LiteRT op alone would need a flatbuffer of its
own, so a LiteRT divergence is localized but not tested for born or
inherited, and no repro is written (the ONNX runtimes' repros are).
"""

from __future__ import annotations

from typing import Any

import numpy as np


from ..runtimes import litert as litert_runtime
from .graph import Produced
from .match import best_match, litert_candidates

NOT_TESTED = "born or inherited not tested (LiteRT cannot run one op alone here)"


def localize_litert(ctx: Any, result: Any, ref: Any, cases: list[Any]) -> None:
    """Fill `result` (a `Localization`) for LiteRT: the curve over its ops, the first divergence."""
    runtime = litert_runtime.load(ctx.subject, preserve_all_tensors=True)
    plain = ctx.runtime(result.runtime)
    interpreter = runtime.interpreter
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]  # the loader's own call
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    runner = interpreter.get_signature_runner(litert_runtime.SERVING_SIGNATURE)
    output_of = {d["index"]: name for name, d in runner.get_output_details().items()}
    produced = [(Produced(k, f"{op['op_name']}_{op['index']}", op["op_name"], details[i]["name"]), i)
                for k, op in enumerate(ops) for i in op["outputs"] if i >= 0]
    result.nodes = len(ops)
    candidates: dict[int, list[str]] = {}
    for p, i in produced:
        if details[i]["dtype"] != np.float32:
            _unmatched(result, p, f"{np.dtype(details[i]['dtype']).name} tensor: only float32 tensors are compared")
            continue
        own = ref.outputs.get(output_of.get(i, ""))  # a signature output: the TF tensor the serving function returns
        found = [own] if own in ref.names else litert_candidates(p.tensor, ref.names)
        if found:
            candidates[i] = found
        else:
            _unmatched(result, p, "no TF tensor named after any of its ';'-joined names in the reference")
    worst: dict[int, dict[str, Any]] = {}
    for case in cases:
        values, got, out_scale = ctx.run_case(result, ref, case, runtime, plain)
        for i, names in candidates.items():
            tensor = np.array(interpreter.get_tensor(i))
            rtol = ctx.tolerance(output_of.get(i, ""), case)
            found = best_match(tensor, {n: values[n] for n in names if n in values}, ctx.atol(result.runtime), rtol,
                               out_scale)
            if found is not None and (i not in worst or found[2].ratio > worst[i]["err"].ratio):
                worst[i] = {"tf": found[0], "layout": found[1], "err": found[2], "case": case.name}
        del values, got
    by_index = {i: p for p, i in produced}
    for i in candidates:
        if i not in worst:
            _unmatched(result, by_index[i], f"no layout of its TF candidates {candidates[i]} fits its shape")
    from .localizer import _point

    keep: dict[str, int] = {}
    for i, w in sorted(worst.items(), key=lambda iw: (iw[1]["err"].ratio, by_index[iw[0]].index)):
        if w["tf"] in keep:
            closer = details[keep[w["tf"]]]["name"]
            _unmatched(result, by_index[i], f"TF tensor {w['tf']!r} is matched closer by {closer}")
        else:
            keep[w["tf"]] = i
    result.points = sorted((_point(by_index[i], worst[i]) for i in keep.values()), key=lambda p: (p.index, p.tensor))
    result.unmatched.sort(key=lambda u: u["index"])
    first = next((p for p in result.points if p.ratio > 1), None)
    if first is not None:
        result.state = "diverges"
        result.first = {"index": first.index, "node": first.node, "op": first.op, "tensor": first.tensor,
                        "ratio": first.ratio, "born": None, "born_ratio": None, "born_note": NOT_TESTED}


def _unmatched(result: Any, p: Produced, reason: str) -> None:
    result.unmatched.append({"index": p.index, "node": p.node, "op": p.op, "tensor": p.tensor, "reason": reason})
