"""What one browser page can hold: a model's whole batch through onnxruntime-web in Chromium.

    python benchmarks/page_limit.py [--artifacts artifacts] [--model fancy_mlp --model chimera] [ROWS ...]

For each model, batches of ROWS x <input width> uniform float32 rows (default
1, 2, 4, 8 and 12 million) go through one page, as `ort_web` runs a case,
until one fails: the seconds each took, the total, and the highest resident
memory of the browser's processes. `PAGE_LIMIT_MB` in
verify/runtimes/web.py is set below the largest batch that ran.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_PARITY_DEADLINE", "600")  # a run of 12 million rows takes about 25 s here

from tf_parity_export.models import get_spec  # noqa: E402
from tf_parity_export.verify import interrupt  # noqa: E402
from tf_parity_export.verify.runtimes import web  # noqa: E402


def peak_mib(pids: list[int]) -> int:
    """The highest peak resident memory (VmHWM) among `pids`, in MiB."""
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) // 1024)
        except OSError:
            pass
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="*", type=int, default=[1_000_000, 2_000_000, 4_000_000, 8_000_000, 12_000_000])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--model", action="append", dest="models")
    args = parser.parse_args()
    web.PAGE_LIMIT_MB = 1 << 20  # measure past the limit, not at it
    for name in args.models or ["fancy_mlp", "chimera"]:
        spec = get_spec(name)
        browser = web.Browser()
        try:
            key = browser.load(args.artifacts / name / "model.onnx")
            for rows in args.rows:
                feed = {t.name: np.random.default_rng(0).random((rows, *t.shape[1:]), dtype=np.float32)
                        for t in spec.inputs}
                mib = sum(v.nbytes for v in feed.values()) / 2**20
                start = time.perf_counter()
                try:
                    out = browser.run(key, feed)
                except Exception as e:
                    print(f"{name}  {rows:>11,} rows  {mib:7.0f} MiB  FAILED after {time.perf_counter() - start:.1f} s: "
                          f"{type(e).__name__}: {str(e).splitlines()[0][:160]}", flush=True)
                    break
                browser_pids = interrupt.family(interrupt.mentioning(f"{browser.home.path}{os.sep}"))
                print(f"{name}  {rows:>11,} rows  {mib:7.0f} MiB  ok in {time.perf_counter() - start:5.1f} s  "
                      f"browser peak {peak_mib(browser_pids)} MiB  ({', '.join(f'{k}={v.reshape(-1)[:1]}' for k, v in out.items())})",
                      flush=True)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
