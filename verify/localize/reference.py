"""TensorFlow's side of a layer-wise comparison: the value of every tensor of the serving function.

The reference for intermediates is the graph tf2onnx converted: the serving
`tf.function`, frozen by `verify.tf_graph.freeze_serving_function` (the same
call the exporter makes), so its tensor names are the names tf2onnx gave the
ONNX tensors. It comes from one of two places:

- live (`LiveReference`): the model rebuilt from the folder's weights, its
  serving function frozen again in this process, and the tensors fetched by
  name in a TF session; any case, but freezing costs a model's trace again;
- stored (`StoredReference`): the values TF computed at export on the first
  test data set, kept in the model folder (see `artifact.py`); one case, no
  TensorFlow needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tf_parity_export.models import ModelSpec
from tf_parity_export.models.lazy_tf import import_tensorflow, quiet_stderr

from ..inputs import Case

LIVE = "TensorFlow: the serving function frozen in this process, its tensors fetched by name"
STORED = "TensorFlow's values recorded at export on {set} ({case})"


class TfGraph:
    """A frozen GraphDef in a TF session; every floating-point tensor of its top level, by name."""

    def __init__(self, graph_def: Any) -> None:
        tf = import_tensorflow()
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        # Tensors inside a While or If body live in functions, not here: control flow is compared whole.
        self.tensors = [t.name for op in self.graph.get_operations() if op.type not in ("Const", "Placeholder")
                        for t in op.outputs if t.dtype.is_floating]
        self.session = tf.compat.v1.Session(graph=self.graph)

    def run(self, feed: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """The named tensors' values for one feed (TF input tensor name -> array)."""
        tf = import_tensorflow()
        with quiet_stderr(), tf.device("/cpu:0"):
            values = self.session.run(names, feed)
        return dict(zip(names, values, strict=True))

    def close(self) -> None:
        self.session.close()


class LiveReference:
    """The reference model's serving function, frozen and run here (needs TensorFlow)."""

    source = LIVE

    def __init__(self, spec: ModelSpec, model: Any) -> None:
        from ..tf_graph import freeze_serving_function

        frozen = freeze_serving_function(spec.serving_function(model), spec)
        self.graph = TfGraph(frozen.graph_def)
        self.inputs = dict(zip((t.name for t in spec.inputs), frozen.inputs, strict=True))
        outputs = {t.name for t in spec.outputs}
        self.outputs = {sig: tf_name for tf_name, sig in frozen.renames.items() if sig in outputs}
        self.names = set(self.graph.tensors)

    def covers(self, case: Case) -> bool:
        return True

    def values(self, case: Case) -> dict[str, np.ndarray]:
        """Every floating-point tensor's value on `case` (TF tensor name -> array)."""
        feed = {self.inputs[k]: v for k, v in case.feed.items()}
        return self.graph.run(feed, self.graph.tensors)

    def close(self) -> None:
        self.graph.close()


class StoredReference:
    """TF's values on one stored test data set, recorded at export (no TensorFlow needed)."""

    def __init__(self, case: Case, values: dict[str, np.ndarray], set_name: str, outputs: dict[str, str]) -> None:
        self.case = case
        self._values = values
        self.outputs = outputs  # signature output -> TF tensor name
        self.names = set(values)
        self.source = STORED.format(set=set_name, case=case.name)

    def covers(self, case: Case) -> bool:
        """Whether `case` is the stored one: same name, same inputs."""
        return case.name == self.case.name and case.feed.keys() == self.case.feed.keys() and all(
            np.array_equal(case.feed[k], self.case.feed[k]) for k in case.feed)

    def values(self, case: Case) -> dict[str, np.ndarray]:
        if not self.covers(case):
            raise ValueError(f"only {self.case.name} has stored intermediates, not {case.name}")
        return dict(self._values)

    def close(self) -> None:
        pass
