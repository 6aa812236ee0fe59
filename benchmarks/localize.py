"""How long localizing a runtime takes, against that runtime's own verification of the model.

    python benchmarks/localize.py MODEL[,MODEL...] RUNTIME[,RUNTIME...] [--artifacts artifacts] [--rounds 3]

Per model and runtime, in one process after a warm-up round, interleaved:

- verification: what `verify_model` spends on that runtime: loading the
  artifact (`RUNTIMES[name](subject)`) and running and comparing every case
  (the loaded runtime is handed to the localizer, as the verifier does);
- localization on demand (`--localize` on a runtime that agrees): the error
  curve over every tensor, no divergence to test;
- localization of a planted perturbation (one weight of `model.onnx` scaled
  by 1.05 in a copy, re-signed: tools/plant.py): the curve, the node run
  alone in the runtime, the repro folder written.

The reference (TF's values, stored at export) is read from the folder in both.
Prints the medians and the ratios to the verification time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from plant import plant  # noqa: E402

from tf_parity_export.models import get_spec  # noqa: E402
from tf_parity_export.verify import layout  # noqa: E402
from tf_parity_export.verify.inputs import random_cases  # noqa: E402
from tf_parity_export.verify.localize import localize_model  # noqa: E402
from tf_parity_export.verify.localize.localizer import ONNX_RUNTIMES  # noqa: E402
from tf_parity_export.verify.runtimes import REFERENCE, RUNTIMES, RunScope, Subject  # noqa: E402
from tf_parity_export.verify.verifier import _reference_model, _run_case, infer, stored_cases, verify_model  # noqa: E402


def setting(spec, folder: Path, scope: RunScope):
    card = layout.check_folder(folder.parent, folder.name)
    model = _reference_model(spec, folder, card)
    cases = random_cases(spec) + stored_cases(folder, spec.name)
    subject = Subject(spec, folder, model, scope)
    reference = RUNTIMES[REFERENCE](subject)
    expected = {c.name: infer(spec, reference, c.feed) for c in cases}
    return subject, cases, expected


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models")
    parser.add_argument("runtimes")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':18s} {'runtime':17s} {'verify s':>9s} {'on demand s':>12s} {'ratio':>6s} {'planted s':>10s} "
          f"{'ratio':>6s}  found")
    with tempfile.TemporaryDirectory() as tmp, RunScope() as scope:
        for name in args.models.split(","):
            spec = get_spec(name)
            planted_root = Path(tmp) / "planted"
            shutil.copytree(args.artifacts / name, planted_root / name)
            shutil.copy(args.artifacts / layout.INDEX, planted_root / layout.INDEX)
            node = plant(planted_root / name)
            plain = setting(spec, args.artifacts / name, scope)
            planted = setting(spec, planted_root / name, scope)
            for runtime in args.runtimes.split(","):
                agreeing = verify_model(spec, args.artifacts / name, [runtime], scope=scope)
                failing = verify_model(spec, planted_root / name, [runtime], scope=scope)
                times: dict[str, list[float]] = {"verify": [], "demand": [], "planted": []}
                found = ""
                for round_ in range(args.rounds + 1):  # the first round warms up
                    subject, cases, expected = plain
                    start = time.perf_counter()
                    loaded = RUNTIMES[runtime](subject)
                    for case in cases:
                        _run_case(spec, loaded, case, expected[case.name], None, spec.atol)
                    verify_s = time.perf_counter() - start
                    start = time.perf_counter()
                    localize_model(agreeing, subject, cases, expected, [runtime], None, {runtime: loaded})
                    demand_s = time.perf_counter() - start
                    planted_s = float("nan")
                    if runtime in ONNX_RUNTIMES:  # the change is in model.onnx: LiteRT's model.tflite has none
                        subject, cases, expected = planted
                        loaded = RUNTIMES[runtime](subject)  # as the verifier hands it over (not timed)
                        start = time.perf_counter()
                        result = localize_model(failing, subject, cases, expected, [runtime], Path(tmp) / "repro",
                                                {runtime: loaded})[runtime]
                        planted_s = time.perf_counter() - start
                        first = result.first or {}
                        found = f"{first.get('node')} (planted {node}), born {first.get('born')}"
                    if round_:
                        times["verify"].append(verify_s)
                        times["demand"].append(demand_s)
                        times["planted"].append(planted_s)
                v, d, p = (statistics.median(times[k]) for k in ("verify", "demand", "planted"))  # nan: not planted
                print(f"{name:18s} {runtime:17s} {v:9.3f} {d:12.3f} {d / v:6.2f} {p:10.3f} {p / v:6.2f}  {found}",
                      flush=True)


if __name__ == "__main__":
    main()
