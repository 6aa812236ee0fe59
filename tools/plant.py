"""Plant a known change in a copy of an exported model, to see localization find it.

    python tools/plant.py ARTIFACTS MODEL OUT [--factor 1.05] [--first] [--op Conv]

Copies ARTIFACTS/MODEL (and manifest.json) to OUT, scales one weight
initializer of its `model.onnx` by FACTOR (the middle one, in graph order, of
those read by a single node, of op type OP if given; `--first`: the first), and re-signs card.json and
manifest.json as an export would, so the integrity checks pass and only the
numbers differ. Prints the node that reads the changed weight: `verify-models
MODEL --artifacts OUT` should then say it first diverges there, born there.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np


def plant(folder: Path, factor: float = 1.05, first: bool = False, op: str | None = None, kind: str = "weight") -> str:
    """Scale one initializer of `folder/model.onnx` in place and re-sign; returns its node's name.

    The initializer is read by that node only, is float32 and is a weight matrix (`kind="weight"`,
    two or more dimensions) or a bias vector (`kind="bias"`, one dimension of more than one value);
    the middle such one in graph order, or the first."""
    import onnx
    from onnx import numpy_helper

    from tf_parity_export.verify import layout

    model = onnx.load(str(folder / layout.ONNX))
    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    want = (lambda dims: len(dims) >= 2) if kind == "weight" else (lambda dims: len(dims) == 1 and dims[0] > 1)
    eligible = [(node, name) for node in model.graph.node for name in node.input
                if name in inits and inits[name].data_type == onnx.TensorProto.FLOAT and readers[name] == 1
                and want(list(inits[name].dims)) and op in (None, node.op_type)]
    node, name = eligible[0 if first else len(eligible) // 2]
    inits[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[name]) * np.float32(factor), name))
    onnx.save(model, str(folder / layout.ONNX))
    card = json.loads((folder / layout.CARD).read_text())
    card["files"] = layout.hash_tree(folder)
    layout.write_json(folder / layout.CARD, card, sort_keys=True)
    index = json.loads((folder.parent / layout.INDEX).read_text())
    index["models"][folder.name].update(card_sha256=layout.sha256(folder / layout.CARD),
                                        onnx_sha256=layout.sha256(folder / layout.ONNX))
    layout.write_json(folder.parent / layout.INDEX, index, sort_keys=True)
    return node.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--factor", type=float, default=1.05)
    parser.add_argument("--first", action="store_true")
    parser.add_argument("--op", help="only a weight read by a node of this op type (Conv, MatMul, Gemm, ...)")
    args = parser.parse_args()
    shutil.copytree(args.artifacts / args.model, args.out / args.model)
    shutil.copy(args.artifacts / "manifest.json", args.out / "manifest.json")
    print(plant(args.out / args.model, args.factor, args.first, args.op))


if __name__ == "__main__":
    main()
