"""SavedModel export: the serving function under "serving_default", with reproducible bytes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tf_parity_export.models.lazy_tf import import_tensorflow
from tf_parity_export.verify.layout import SERVING_SIGNATURE


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
    # Only the signature is saved (not `fn` as an attribute too, which would store a second copy of the
    # graph and retrace it), and no gradient functions: a served model is never differentiated, and
    # tracing them took 9 of EfficientNetB0's 18 s of saving.
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    tf.saved_model.save(root, str(path), signatures={SERVING_SIGNATURE: fn.get_concrete_function()}, options=options)
    canonicalize(path)


_FUNCTION_SUFFIX = re.compile(r"_(\d+)$")


def canonicalize(path: Path) -> None:
    """Renumber what TensorFlow numbers per process, so bytes depend on the model alone.

    Function names (`__inference_serve_1480`, `..._while_body_1286`) and
    captured-variable names (`_user_specified_name: "1687"`) carry
    process-wide counters: exporting `chimera` alone or after four other
    models gives different files. Both are renumbered 0, 1, ... in their
    original (creation) order wherever they appear in the proto, the function
    library is sorted by the new names, and fingerprint.pb is recomputed
    without its random UUID.
    """
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    pb = Path(path) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    graph = proto.meta_graphs[0].graph_def
    names = [f.signature.name for f in graph.library.function]
    numbered = sorted((n for n in names if _FUNCTION_SUFFIX.search(n)),
                      key=lambda n: int(_FUNCTION_SUFFIX.search(n).group(1)))
    renames = {n: _FUNCTION_SUFFIX.sub(f"_{i}", n) for i, n in enumerate(numbered)}
    word = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, sorted(renames, key=len, reverse=True))) + r")(?![\w])")
    _rewrite_strings(proto, lambda text: word.sub(lambda m: renames[m.group(1)], text) if renames else text)

    attrs = _capture_attrs(proto)
    captures = {n: i for i, n in enumerate(sorted({int(a.s) for a in attrs}))}
    for attr in attrs:
        attr.s = str(captures[int(attr.s)]).encode()
    functions = sorted((type(f).FromString(f.SerializeToString()) for f in graph.library.function),
                       key=lambda f: f.signature.name)
    del graph.library.function[:]
    graph.library.function.extend(functions)
    pb.write_bytes(proto.SerializeToString(deterministic=True))

    fingerprint = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(str(path)))
    fingerprint.uuid = ""  # random per save; the checksums above identify the model
    (Path(path) / "fingerprint.pb").write_bytes(fingerprint.SerializeToString(deterministic=True))


def _capture_attrs(message: Any) -> list[Any]:
    """The `_user_specified_name` attrs that hold bare counters (captured variables),
    wherever they are: node attrs and function argument attrs."""
    from google.protobuf.descriptor import FieldDescriptor

    found = []
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            for key in value:
                item = value[key]
                if key == "_user_specified_name" and item.DESCRIPTOR.name == "AttrValue" and item.s.isdigit():
                    found.append(item)
                found += _capture_attrs(item)
        elif _repeated(field):
            for item in value:
                found += _capture_attrs(item)
        else:
            found += _capture_attrs(value)
    return found


def _rewrite_strings(message: Any, fn: Any) -> None:
    """Apply `fn` to every string in a proto: fields, repeated fields and map keys."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if _repeated(field):
                value[:] = [fn(v) for v in value]
            else:
                setattr(message, field.name, fn(value))
        elif field.type == FieldDescriptor.TYPE_BYTES and field.name == "s":
            continue  # attr values: bytes, handled by _capture_attrs where they matter
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                entries = [(k, value[k]) for k in list(value.keys())]
                key_is_string = field.message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING
                val_is_message = field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
                if val_is_message:
                    saved = [(fn(k) if key_is_string else k, type(v).FromString(v.SerializeToString())) for k, v in entries]
                    value.clear()
                    for k, v in saved:
                        value[k].CopyFrom(v)
                        _rewrite_strings(value[k], fn)
                else:
                    saved = [(fn(k) if key_is_string else k, fn(v) if isinstance(v, str) else v) for k, v in entries]
                    value.clear()
                    value.update(saved)
            elif _repeated(field):
                for item in value:
                    _rewrite_strings(item, fn)
            else:
                _rewrite_strings(value, fn)


def _repeated(field: Any) -> bool:
    # protobuf 6 deprecates `label` for the `is_repeated` property; older ones lack it
    flag = getattr(field, "is_repeated", None)
    return field.label == field.LABEL_REPEATED if flag is None else bool(flag)
