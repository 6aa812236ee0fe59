"""Reproduce every performance figure of the README in one run.

    python benchmarks/run.py [--artifacts artifacts] [--rounds 2] [--json out.json]

1. Lean graphs: the exported ONNX of each model against two hand-built graphs
   with the same weights (dense layers as Gemm, or as MatMul; FancyMLP's tail
   as ReduceL2/Loop/If) and against raw tf2onnx output, in onnxruntime CPU on
   one thread, at batch 1 and 64. Each round times every graph; a ratio is
   the median over rounds of that round's ratio to the faster hand-built
   graph, so a burst of load that slows a whole round cancels out.
2. Export speed: `export-models --all` (build, SavedModel, ONNX, verify; one
   process) against tf2onnx's own command line converting the same five
   SavedModels (one process each), wall time and peak resident memory.
3. Verification time after TensorFlow is imported (all models, every CPU runtime).
4. With --real-models (needs ../shared/gauntlet-zoo installed: `pip install --no-deps
   ../shared/gauntlet-zoo`; about 15 minutes): `export-models NAME --no-verify`
   (SavedModel, ONNX and LiteRT in one process) for ResNet50 (64x64) and
   MobileNetV2 against the two command-line tools it replaces on the same
   SavedModel, tf2onnx's (`python -m tf2onnx.convert --saved-model`) plus TF's
   `tflite_convert`: wall time (the two tools' summed) and peak resident
   memory (the higher of the two tools'), interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floors import floors_for  # noqa: E402

from tf_parity_export.verify.bench import interleaved_samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["mlp", "sequential_mlp", "fancy_mlp", "nest_mlp", "chimera"]


def single_thread(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def convert_with_cli(artifacts: Path, out: Path) -> tuple[float, float]:
    wall, peak = 0.0, 0.0
    for name in MODELS:
        w, p = run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(artifacts / name / "saved_model"),
                    "--output", str(out / f"{name}.onnx"), "--opset", "17"])
        wall, peak = wall + w, max(peak, p)
    return wall, peak


def export_speed(artifacts: Path, rounds: int, raw: Path) -> dict:
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            jobs = [("ours", lambda: run([sys.executable, "-c", "from tf_parity_export.export.cli import entry; entry()",
                                          "--all", "--out", f"{tmp}/artifacts"])),
                    ("tf2onnx", lambda: convert_with_cli(artifacts, raw))]
            for name, job in (jobs if r % 2 == 0 else jobs[::-1]):
                (ours if name == "ours" else theirs).append(job())
    wall = statistics.median(w for w, _ in ours)
    cli = statistics.median(w for w, _ in theirs)
    return {"export_models_all_s": wall, "tf2onnx_cli_5_models_s": cli, "ratio": wall / cli,
            "export_models_peak_rss_mib": max(p for _, p in ours), "tf2onnx_cli_peak_rss_mib": max(p for _, p in theirs)}


REAL_MODELS = ["zoo_resnet50", "zoo_mobilenetv2"]


def real_models(rounds: int) -> dict:
    """export-models NAME --no-verify against tf2onnx's and TFLite's command lines on its SavedModel."""
    result = {}
    tflite_convert = str(Path(sys.executable).with_name("tflite_convert"))
    export = [sys.executable, "-c", "from tf_parity_export.export.cli import entry; entry()"]
    for name in REAL_MODELS:
        ours, theirs = [], []
        with tempfile.TemporaryDirectory() as tmp:
            run([*export, name, "--no-verify", "--out", f"{tmp}/seed"])  # the SavedModel both sides start from
            saved_model = f"{tmp}/seed/{name}/saved_model"

            def tools() -> tuple[float, float]:
                w1, p1 = run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model,
                              "--output", f"{tmp}/cli.onnx", "--opset", "17"])
                w2, p2 = run([tflite_convert, "--saved_model_dir", saved_model, "--output_file", f"{tmp}/cli.tflite"])
                return w1 + w2, max(p1, p2)

            jobs = [("ours", lambda: run([*export, name, "--no-verify", "--out", f"{tmp}/ours"])), ("tools", tools)]
            for r in range(rounds):
                for who, job in (jobs if r % 2 == 0 else jobs[::-1]):
                    (ours if who == "ours" else theirs).append(job())
        result[name] = {"export_models_s": statistics.median(w for w, _ in ours),
                        "cli_tools_s": statistics.median(w for w, _ in theirs),
                        "time_ratio": statistics.median(o[0] / t[0] for o, t in zip(ours, theirs)),
                        "export_models_peak_mib": max(p for _, p in ours), "cli_tools_peak_mib": max(p for _, p in theirs),
                        "rounds": rounds}
        result[name]["memory_ratio"] = result[name]["export_models_peak_mib"] / result[name]["cli_tools_peak_mib"]
    return result


def lean_graphs(artifacts: Path, raw: Path) -> dict:
    result = {}
    for name in MODELS:
        path = artifacts / name / "model.onnx"
        graphs = {"exported": single_thread(path), "raw_tf2onnx": single_thread(raw / f"{name}.onnx"),
                  **{k: single_thread(v) for k, v in floors_for(path).items()}}
        for batch in (1, 64):
            x = {"x": np.random.default_rng(batch).random((batch, 20), dtype=np.float32)}
            want = graphs["exported"].run(None, x)[0]
            for g in graphs.values():  # the same function, or the comparison means nothing
                np.testing.assert_allclose(g.run(None, x)[0], want, rtol=1e-5, atol=1e-5)
            samples = interleaved_samples({k: (lambda s=s: s.run(None, x)) for k, s in graphs.items()}, rounds=61)
            floors = [min(g, m) for g, m in zip(samples["hand_gemm"], samples["hand_matmul"])]
            ratio = lambda name: statistics.median(t / f for t, f in zip(samples[name], floors))  # noqa: E731
            result[f"{name}/batch_{batch}"] = {
                **{f"{k}_us": statistics.median(v) * 1e6 for k, v in samples.items()},
                "exported_vs_floor": ratio("exported"), "raw_vs_floor": ratio("raw_tf2onnx")}
    return result


def verify_time(artifacts: Path) -> dict:
    code = (
        "import json, time; from tf_parity_export.models.lazy_tf import import_tensorflow; t = time.perf_counter();"
        "import_tensorflow(); t1 = time.perf_counter(); from tf_parity_export.verify import verify_models;"
        f"r = verify_models({MODELS!r}, {str(artifacts)!r}); t2 = time.perf_counter();"
        "print(json.dumps({'tf_import_s': t1 - t, 'verify_all_s': t2 - t1, 'passed': bool(r),"
        "'runtimes_ran': sorted({k for m in r.models for k, v in m.runtimes.items() if v == 'ran'})}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the export comparison")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--real-models", action="store_true",
                        help=f"also time {', '.join(REAL_MODELS)} (needs gauntlet-zoo installed)")
    parser.add_argument("--real-rounds", type=int, default=3, help="interleaved rounds of the real-model comparison")
    parser.add_argument("--only-real-models", action="store_true", help="just the real-model comparison")
    args = parser.parse_args()
    if args.real_models or args.only_real_models:
        real = real_models(args.real_rounds)
        print("Real models: export-models NAME --no-verify vs tf2onnx CLI + tflite_convert on its SavedModel "
              f"(medians of {args.real_rounds} interleaved rounds; peak = the higher tool's)")
        for name, row in real.items():
            print(f"{name:18} ours {row['export_models_s']:6.1f} s / {row['export_models_peak_mib']:5.0f} MiB   "
                  f"tools {row['cli_tools_s']:6.1f} s / {row['cli_tools_peak_mib']:5.0f} MiB   "
                  f"time ratio {row['time_ratio']:.2f}, memory ratio {row['memory_ratio']:.2f}")
        if args.only_real_models:
            if args.json:
                args.json.write_text(json.dumps({"real_models": real}, indent=2) + "\n")
            return
    with tempfile.TemporaryDirectory() as raw:
        raw = Path(raw)
        speed = export_speed(args.artifacts, args.rounds, raw)
        lean = lean_graphs(args.artifacts, raw)
    timing = verify_time(args.artifacts)
    print("Lean graphs: onnxruntime CPU, 1 thread, microseconds per call and ratios to the faster hand-built graph"
          " (medians over 61 interleaved rounds)")
    print(f"{'model/batch':24} {'exported':>9} {'raw tf2onnx':>12} {'hand Gemm':>10} {'hand MatMul':>12} "
          f"{'exported/floor':>15} {'raw/floor':>10}")
    for key, row in lean.items():
        print(f"{key:24} {row['exported_us']:9.2f} {row['raw_tf2onnx_us']:12.2f} {row['hand_gemm_us']:10.2f} "
              f"{row['hand_matmul_us']:12.2f} {row['exported_vs_floor']:15.3f} {row['raw_vs_floor']:10.3f}")
    print(f"\nExport: export-models --all {speed['export_models_all_s']:.1f} s (peak {speed['export_models_peak_rss_mib']:.0f} MiB) "
          f"vs tf2onnx CLI x5 {speed['tf2onnx_cli_5_models_s']:.1f} s (peak {speed['tf2onnx_cli_peak_rss_mib']:.0f} MiB): "
          f"ratio {speed['ratio']:.2f} (median of {args.rounds} interleaved rounds)")
    print(f"Verify: all models on {len(timing['runtimes_ran'])} runtimes in {timing['verify_all_s']:.1f} s "
          f"after TensorFlow's import ({timing['tf_import_s']:.1f} s); passed={timing['passed']}")
    if args.json:
        extra = {"real_models": real} if args.real_models else {}
        args.json.write_text(json.dumps({"lean_graphs": lean, "export": speed, "verify": timing, **extra}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
