"""Mutation testing of the modules that decide results, with mutmut 3 (``pip install -e .[mutation]``).

    nice -n 10 python -m benchmarks.mutation                      # every module, slowest last
    nice -n 10 python -m benchmarks.mutation --modules metrics clips

Each module is mutated in its own scratch copy of the working tree (``--work_dir``), never in
the checkout, and only the test files that exercise it run (mutmut then narrows each mutant to
the tests that reach the mutated function). Results: ``benchmarks/results/mutation.csv`` (one
row per module) and ``mutation.md`` (scores, and every surviving mutant with its diff and its
triage). A survivor listed in ``EQUIVALENT`` (mutant name -> why no test can tell it apart) is
left out of the score's denominator; every other survivor counts against the module.

Not run in CI: a module takes minutes (hundreds of mutants).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from unilvseg.io import write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class Target:
    name: str
    source: str  # module file, relative to the repository root
    tests: tuple[str, ...]  # pytest arguments selecting the relevant tests


# Small modules first, so a partial run still reports whole modules. Slow end-to-end runs
# (training CLIs, predict) are excluded: every mutant would retrain a network.
TARGETS = (
    Target("metrics", "unilvseg/evaluation/metrics.py", ("tests/test_evaluation.py",)),
    Target("clips", "unilvseg/data/clips.py", ("tests/test_data.py", "-k", "clip or window or sampler or padded")),
    Target("tracings", "unilvseg/data/tracings.py", ("tests/test_data.py", "-k", "tracing or mask or rasteris or padded or resize")),
    Target("bootstrap", "unilvseg/evaluation/bootstrap.py", ("tests/test_evaluation.py",)),
    Target("ssl", "unilvseg/tasks/ssl.py", ("tests/test_tasks.py", "tests/test_task_values.py", "-k", "not train_ and not seeded and not cli and not flags")),
    Target("weak", "unilvseg/tasks/weak.py", ("tests/test_tasks.py", "tests/test_task_values.py", "-k", "not train_ and not seeded and not cli and not flags")),
    Target("qc", "unilvseg/labelfree/qc.py", ("tests/test_labelfree.py", "-k", "qc or quality")),
    Target("volumes", "unilvseg/evaluation/volumes.py", ("tests/test_evaluation.py",)),
)

# Survivors that no test can distinguish from the original, with the reason (see mutation.md).
EQUIVALENT: dict[str, str] = {}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}


def scratch_copy(target: Target, work_dir: Path) -> Path:
    """The working tree's tracked and untracked (not ignored) files, plus a [tool.mutmut] section."""
    root = work_dir / target.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    also_copy = sorted({f.split("/")[0] for f in filter(None, files)} - {"unilvseg"})
    config = "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["unilvseg/"]',
        f"only_mutate = {json.dumps([target.source])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(list(target.tests))}",
        f"also_copy = {json.dumps(also_copy)}", "",
    ])
    with open(root / "pyproject.toml", "a") as handle:
        handle.write(config)
    return root


def run_target(target: Target, work_dir: Path, children: int) -> dict:
    root = scratch_copy(target, work_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutated copy must win
    env.update(UNILVSEG_CACHE=str(root / ".cache"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.perf_counter()
    log = root / "mutmut.log"
    with open(log, "w") as handle:
        code = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)],
                              cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    meta = root / "mutants" / (target.source + ".meta")
    if code != 0 or not meta.is_file():
        return {"module": target.source, "status": f"mutmut failed (exit {code}, see {log})", "seconds": round(seconds)}
    results = json.loads(meta.read_text())["exit_code_by_key"]
    counts: dict[str, int] = {}
    survivors = []
    for key, exit_code in sorted(results.items()):
        status = STATUS.get(exit_code, "suspicious")
        counts[status] = counts.get(status, 0) + 1
        if status in ("survived", "no tests", "suspicious", "skipped"):
            diff = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=root, env=env,
                                  capture_output=True, text=True).stdout
            survivors.append({"name": key, "status": status, "diff": diff.strip()})
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)
    equivalent = sum(1 for s in survivors if s["name"] in EQUIVALENT)
    not_killed = len(survivors) - equivalent
    scored = killed + not_killed
    return {
        "module": target.source, "status": "complete", "seconds": round(seconds), "mutants": len(results),
        "killed": killed, "survived": counts.get("survived", 0), "no_tests": counts.get("no tests", 0),
        "equivalent": equivalent, "score": round(100.0 * killed / scored, 1) if scored else float("nan"),
        "survivors": survivors,
    }


def write_report(rows: list[dict]) -> None:
    columns = ["module", "status", "mutants", "killed", "survived", "no_tests", "equivalent", "score", "seconds"]
    csv = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    write_text("\n".join(csv) + "\n", RESULTS / "mutation.csv")
    lines = ["# Mutation testing (mutmut 3)", "",
             "`nice -n 10 python -m benchmarks.mutation` (2-core shared CPU). Score = killed / (killed + survivors "
             "that are not equivalent); timeouts count as killed, 'no tests' as survivors.", "",
             "| module | status | mutants | killed | survived | no tests | equivalent | score % | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    for row in rows:
        if not row.get("survivors"):
            continue
        lines += ["", f"## {row['module']}: surviving mutants", ""]
        for survivor in row["survivors"]:
            reason = EQUIVALENT.get(survivor["name"])
            verdict = f"equivalent: {reason}" if reason else "NOT KILLED (no test distinguishes it yet)"
            lines += [f"### `{survivor['name']}` ({survivor['status']}) {verdict}", "", "```diff",
                      "\n".join(l for l in survivor["diff"].splitlines() if not l.startswith("#")), "```", ""]
    write_text("\n".join(lines) + "\n", RESULTS / "mutation.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="*", default=[t.name for t in TARGETS],
                        help=f"subset of: {' '.join(t.name for t in TARGETS)}")
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/unilvseg-mutation"))
    parser.add_argument("--max_children", type=int, default=2)
    args = parser.parse_args(argv)
    unknown = set(args.modules) - {t.name for t in TARGETS}
    if unknown:
        print(f"error: unknown --modules {' '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    previous = {}
    if (RESULTS / "mutation.json").is_file():  # keep the modules not rerun this time
        previous = {row["module"]: row for row in json.loads((RESULTS / "mutation.json").read_text())}
    for target in TARGETS:
        if target.name not in args.modules:
            continue
        print(f"mutating {target.source} ...", flush=True)
        previous[target.source] = run_target(target, args.work_dir, args.max_children)
        row = previous[target.source]
        print({k: v for k, v in row.items() if k != "survivors"}, flush=True)
        rows = [previous[t.source] for t in TARGETS if t.source in previous]
        write_text(json.dumps(rows, indent=1) + "\n", RESULTS / "mutation.json")
        write_report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
