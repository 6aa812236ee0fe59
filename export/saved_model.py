"""SavedModel export: the serving function under "serving_default", with reproducible bytes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from models.lazy_tf import import_tensorflow
from verify.layout import SERVING_SIGNATURE


def export_saved_model(model: Any, fn: Any, path: Path) -> None:
    """Write `fn` (a `tf.function` with a fixed input signature) as a SavedModel.

    Args:
        model: the Keras model whose variables `fn` reads. Only its weights
            are tracked, in `model.weights` order (Keras' ExportArchive
            collects them through a set, so their order changes from run
            to run), which keeps the checkpoint bytes stable.
        fn: the serving function; its dict keys become the signature's outputs.
        path: the SavedModel directory to create.
    """
    tf = import_tensorflow()
    root = tf.Module()
    root.model_weights = [w.value for w in model.weights]
    root.serve = fn
    tf.saved_model.save(root, str(path), signatures={SERVING_SIGNATURE: fn.get_concrete_function()})
    canonicalize(path)


_FUNCTION_SUFFIX = re.compile(r"_(\d+)$")
_CAPTURE_NAME = re.compile(r'(key: "_user_specified_name"\s+value \{\s+s: ")(\d+)(")')


def canonicalize(path: Path) -> None:
    """Renumber what TensorFlow numbers per process, so bytes depend on the model alone.

    Function names (`__inference_serve_1480`, `..._while_body_1286`) and
    captured-variable names (`_user_specified_name: "1687"`) carry
    process-wide counters: exporting `chimera` alone or after four other
    models gives different files. Both are renumbered 0, 1, ... in their
    original (creation) order, the function library is sorted by the new
    names, and fingerprint.pb is recomputed without its random UUID.
    """
    from google.protobuf import text_format
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    pb = Path(path) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    names = [f.signature.name for f in proto.meta_graphs[0].graph_def.library.function]
    numbered = sorted((n for n in names if _FUNCTION_SUFFIX.search(n)),
                      key=lambda n: int(_FUNCTION_SUFFIX.search(n).group(1)))
    renames = {n: _FUNCTION_SUFFIX.sub(f"_{i}", n) for i, n in enumerate(numbered)}
    text = text_format.MessageToString(proto)
    if renames:
        word = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, sorted(renames, key=len, reverse=True))) + r")(?![\w])")
        text = word.sub(lambda m: renames[m.group(1)], text)
    captures = {n: str(i) for i, n in enumerate(sorted({int(m.group(2)) for m in _CAPTURE_NAME.finditer(text)}))}
    text = _CAPTURE_NAME.sub(lambda m: m.group(1) + captures[int(m.group(2))] + m.group(3), text)
    proto = text_format.Parse(text, saved_model_pb2.SavedModel())
    library = proto.meta_graphs[0].graph_def.library
    functions = sorted((type(f).FromString(f.SerializeToString()) for f in library.function),
                       key=lambda f: f.signature.name)
    del library.function[:]
    library.function.extend(functions)
    pb.write_bytes(proto.SerializeToString(deterministic=True))

    fingerprint = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(str(path)))
    fingerprint.uuid = ""  # random per save; the checksums above identify the model
    (Path(path) / "fingerprint.pb").write_bytes(fingerprint.SerializeToString(deterministic=True))
