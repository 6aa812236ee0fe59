"""Mutation testing of the check-bearing modules with mutmut 3: one command.

    .venv/bin/python tools/mutation.py [--workers 1] [mutant-glob ...]

Stages the package as it is imported (tf_parity_export/{models,export,verify}/,
which the repository keeps as top-level folders) with tests/unit and
tests/mutation/mutmut.toml in build/mutation/, runs `mutmut run` there, and
prints mutants, killed, survived and the score per module, then every mutant
that survived. Survivors that no test can kill are listed, with the reason, in
tests/mutation/EQUIVALENT.md; they are counted apart. Exit status 1 when the
score over the modules, less the equivalents, is under 90%.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "mutation"
FLOOR = 90.0
# Functions not mutated, with the reason (the staged copy gets mutmut's "no mutate" pragmas).
SKIP = {
    # The export-time search for covering inputs: needs TensorFlow and a built model (seconds a
    # call). It is no check: what it finds is measured by the verifier's coverage rules, and the
    # end-to-end tests (tests/test_verify.py) fail when a required path is not covered.
    "verify/inputs.py": ["find_coverage_inputs"],
    # TensorFlow's side of the verifier (the reference rebuilt from the weights, the stored-output
    # check against it, tool versions, the whole-run entry point): tested end to end in
    # tests/test_verify.py and tests/test_test_data.py, seconds per call.
    "verify/verifier.py": ["environment", "stored_cases", "_reference_model", "_stored_outputs_check",
                           "verify_models"],
    # The export-time search for inputs that take every branch and loop count (magnitudes, gradient
    # steps, refinement; thousands of graph runs a call). It is no check either: the verifier
    # measures what it found with the coverage rules above it in the same module (mutated), and
    # tests/test_coverage.py fails when the search misses a path of a seed model.
    "verify/coverage.py": ["_directions", "_objective", "class _Search", "find_covering_inputs"],
}


def stage() -> None:
    if STAGE.exists():
        shutil.rmtree(STAGE)
    pkg = STAGE / "tf_parity_export"
    pkg.mkdir(parents=True)
    shutil.copy(ROOT / "tf_parity_export" / "__init__.py", pkg / "__init__.py")
    ignore = shutil.ignore_patterns("__pycache__")
    for sub in ("models", "export", "verify"):
        shutil.copytree(ROOT / sub, pkg / sub, ignore=ignore)
    for rel, functions in SKIP.items():
        _no_mutate(pkg / rel, functions)
    shutil.copytree(ROOT / "tests" / "unit", STAGE / "tests" / "unit", ignore=ignore)
    shutil.copy(ROOT / "tests" / "mutation" / "mutmut.toml", STAGE / "pyproject.toml")


def _no_mutate(path: Path, functions: list[str]) -> None:
    """Wrap each top-level function (or "class NAME") in `# pragma: no mutate start/end`."""
    lines = path.read_text().splitlines()
    out, inside = [], False
    for line in lines:
        top = line.startswith(("def ", "class ", "@")) or (line and not line[0].isspace() and not line.startswith("#")
                                                           and not line.startswith(")"))
        if inside and top:
            out.append("# pragma: no mutate end")
            inside = False
        if any(line.startswith(f"def {f}(") or (f.startswith("class ") and line.startswith((f"{f}:", f"{f}(")))
               for f in functions):
            out.append("# pragma: no mutate start")
            inside = True
        out.append(line)
    if inside:
        out.append("# pragma: no mutate end")
    path.write_text("\n".join(out) + "\n")


def equivalents() -> set[str]:
    """Mutant names listed in EQUIVALENT.md (a line starting with `- `name``)."""
    text = (ROOT / "tests" / "mutation" / "EQUIVALENT.md").read_text()
    return set(re.findall(r"^- `([\w.]+__mutmut_\d+)`", text, re.M))


# mutmut's exit codes per mutant (mutmut/stats.py): 1 and 3 the tests failed, 36/24/152/255 a timeout.
KILLED = {1, 3, 24, -24, 36, 152, 255}


def summary() -> int:
    equivalent = equivalents()
    rows, survivors = [], []
    total = Counter()
    for meta in sorted((STAGE / "mutants").rglob("*.py.meta")):
        module = meta.relative_to(STAGE / "mutants").as_posix().removesuffix(".meta")
        data = json.loads(meta.read_text())
        statuses = data["exit_code_by_key"]
        c = Counter()
        for name, status in statuses.items():
            if status is None:  # not run: a run restricted to some mutants
                c["not run"] += 1
                continue
            if status in KILLED:
                c["killed"] += 1
            elif name in equivalent:
                c["equivalent"] += 1
            else:
                c["survived"] += 1
                survivors.append(f"{name} (exit {status}: 0 survived, 33 no tests, None not run)")
        c["mutants"] = len(statuses) - c["not run"]
        total.update(c)
        rows.append((module, c))
    print(f"\n{'module':45} {'mutants':>8} {'killed':>7} {'equiv':>6} {'survived':>9} {'score':>7}")
    for module, c in [*rows, ("total", total)]:
        scored = c["mutants"] - c["equivalent"]
        score = 100.0 * c["killed"] / scored if scored else 100.0
        print(f"{module:45} {c['mutants']:8} {c['killed']:7} {c['equivalent']:6} {c['survived']:9} {score:6.1f}%")
    for line in survivors:
        print(f"survived: {line}")
    scored = total["mutants"] - total["equivalent"]
    return 0 if scored and 100.0 * total["killed"] / scored >= FLOOR else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("mutants", nargs="*", help="only these mutant names or globs (re-run a few)")
    args = parser.parse_args()
    start = time.perf_counter()
    stage()
    log = STAGE / "mutmut.log"
    with log.open("w") as out:  # mutmut redraws a progress line per mutant: keep it out of the terminal
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.workers), *args.mutants],
                       cwd=STAGE, stdout=out, stderr=subprocess.STDOUT, check=True)
    print(f"mutmut's log: {log.relative_to(ROOT)}; inspect a mutant with `cd {STAGE.relative_to(ROOT)} && "
          f"{Path(sys.executable).name} -m mutmut show NAME`")
    code = summary()
    print(f"\nmutation run took {time.perf_counter() - start:.0f} s with {args.workers} worker(s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
