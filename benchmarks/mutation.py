"""Mutation testing of the modules that decide results, with mutmut 3 (``pip install -e .[mutation]``).

    nice -n 10 python -m benchmarks.mutation                      # every module, slowest last
    nice -n 10 python -m benchmarks.mutation --modules metrics clips
    nice -n 10 python -m benchmarks.mutation --modules volumes --rerun_survivors   # after adding tests

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
import tempfile
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from unilvseg.io import write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STATUS = RESULTS / "mutation-status.md"  # hand-written status paragraph, placed under the score table


@dataclass(frozen=True)
class Target:
    name: str
    source: str  # module file, relative to the repository root
    tests: tuple[str, ...]  # pytest arguments selecting the relevant tests
    # Function header lines left unmutated in the scratch copy, and why (see scratch_copy).
    unmutated: tuple[str, ...] = ()


# Small modules first, so a partial run still reports whole modules. Slow end-to-end runs
# (training CLIs, predict) are excluded: every mutant would retrain a network.
# test_simlvseg.py checks --ssl_blank, --random_reverse and --pretrained_type; its training and CLI runs
# are left out (minutes per mutant), as is test_ddp.py (spawns processes).
_TASK_TESTS = ("tests/test_tasks.py", "tests/test_task_values.py", "tests/test_simlvseg.py", "-k",
               "not test_train_ssl_then_weak and not test_seeded_cpu_runs and not test_preset and not test_augment_flag "
               "and not test_predict_reads and not test_train_ssl_checkpoint and not test_pct_train and not test_weak_flags")
TARGETS = (
    Target("metrics", "unilvseg/evaluation/metrics.py", ("tests/test_evaluation.py",)),
    Target("clips", "unilvseg/data/clips.py", ("tests/test_data.py",)),
    Target("tracings", "unilvseg/data/tracings.py", ("tests/test_data.py",)),
    Target("bootstrap", "unilvseg/evaluation/bootstrap.py",
           ("tests/test_evaluation.py", "tests/test_compare.py", "tests/test_ef_agreement.py")),
    # Lightning's save_hyperparameters() reads the arguments from the caller's frame, which
    # mutmut's trampoline replaces: TemporalMaskingTask.__init__ is left unmutated.
    Target("ssl", "unilvseg/tasks/ssl.py", _TASK_TESTS,
           unmutated=("    def __init__(",)),
    Target("weak", "unilvseg/tasks/weak.py", _TASK_TESTS),
    Target("qc", "unilvseg/labelfree/qc.py", ("tests/test_labelfree.py", "-k", "qc or convex_hull")),
    Target("volumes", "unilvseg/evaluation/volumes.py",
           ("tests/test_evaluation.py", "tests/test_ed_es_rules.py", "tests/test_ef_agreement.py")),
)

# Survivors that no test can distinguish from the original, with the reason (see mutation.md).
_M = "unilvseg.evaluation.metrics."
_C = "unilvseg.data.clips.xǁClipSamplerǁ"
_FLOAT_PROMOTES = "the other operand is float64, so the expression is float64 whatever this dtype"
_NAN_SPELLING = 'float("NAN") is the same NaN as float("nan")'
_NO_DIVISION_BY_ZERO = "the inner np.where never divides by zero, so no warning exists to suppress"
_MASKED = "this denominator is only used where the outer np.where discards it (total <= 0) or equals it (total == 1)"
_ZERO_SHIFT = "at the boundary the shift is ceil(0) * period = 0 frames"
_B = "unilvseg.evaluation.bootstrap."
_W = "unilvseg.tasks.weak."
_Q = "unilvseg.labelfree.qc."
_T = "unilvseg.data.tracings."
_S = "unilvseg.tasks.ssl."
_V = "unilvseg.evaluation.volumes."
_SAME_VALUES = "the same values: only the dtype differs (int64 for an all-integer column) and every consumer converts to float64"
_PROGRESS_BAR = "prog_bar only chooses what the progress bar shows; the logged values and checkpoints are the same"
_SAME_STREAM = ("the same indices: numpy draws the same stream for int32 and int64 bounds below 2**31, for "
                "integers(h) and integers(0, h), and for one (2, n) draw as for two (1, n) draws (checked)")
_DEFAULT_DTYPE = "np.asarray/np.empty/np.arange default to float64 or int64 here, or the result is cast to float64 next"
_CHUNKS = "the chunk size only changes how the same stream of indices is cut (test_resampled_sums_equal_explicit_resamples)"
_INTEGER_COUNTS = "pixel counts are integers: their sums are exact in int64 and every ratio is taken in float64"
EQUIVALENT: dict[str, str] = {
    **{_M + f"x_dice_from_counts__mutmut_{i}": "2.0 * intersection is float64 whatever the input dtype" for i in (4, 6)},
    **{_M + f"x_dice_from_counts__mutmut_{i}": _FLOAT_PROMOTES for i in (10, 12, 14, 16)},
    **{_M + f"x_dice_from_counts__mutmut_{i}": "only 0/0 can occur (intersection <= total): an 'invalid', never a 'divide' warning"
       for i in (18, 20)},
    **{_M + f"x_ef_agreement__mutmut_{i}": _FLOAT_PROMOTES for i in (3, 5, 8, 10)},
    **{_M + f"x_ef_agreement__mutmut_{i}": _NAN_SPELLING for i in (35, 47, 55, 67)},
    _M + "x_mean_absolute_change__mutmut_15": _NAN_SPELLING,
    **{_M + f"x_pooled_dice__mutmut_{i}": "np.sum widens small integers to int64/uint64; then multiplied or added to float64"
       for i in (7, 9, 17, 19, 25, 27)},
    **{_M + f"x_pooled_dice__mutmut_{i}": _NO_DIVISION_BY_ZERO for i in (28, 29, 30, 31)},
    **{_M + f"x_pooled_dice__mutmut_{i}": _MASKED for i in (54, 55, 56)},
    **{_C + f"centred_clip__mutmut_{i}": _ZERO_SHIFT for i in (8, 17, 18)},
    _C + "random_clip__mutmut_5": "rng.integers(h) and rng.integers(0, h) draw the same numbers from the same stream",
    **{_B + f"x_resample_indices__mutmut_{i}": _SAME_STREAM for i in (14, 28, 31, 38, 39, 40, 41, 42, 43)},
    **{_B + f"x_resampled_sums__mutmut_{i}": _DEFAULT_DTYPE for i in (3, 5, 36, 38, 73, 75, 89)},
    **{_B + f"x_resampled_sums__mutmut_{i}": "both summation paths give the same sums (exactly for integer pixel counts; "
       "test_resampled_sums_equal_explicit_resamples checks both)" for i in (10, 11, 14)},
    _B + "x_resampled_sums__mutmut_48": _CHUNKS,
    _B + "x_bootstrap_dice__mutmut_86": _CHUNKS,
    _B + "x_bootstrap_dice__mutmut_185": _CHUNKS,
    _B + "x_bootstrap_mean__mutmut_23": _CHUNKS,
    **{_B + f"x_paired_bootstrap_dice__mutmut_{i}": _CHUNKS for i in (144, 242)},
    **{_B + f"x__ratio__mutmut_{i}": _FLOAT_PROMOTES for i in (11, 13, 15, 17)},
    **{_B + f"x__require_defined__mutmut_{i}": _DEFAULT_DTYPE for i in (3, 5)},
    **{_B + f"x_bootstrap_dice__mutmut_{i}": _INTEGER_COUNTS for i in (9, 11, 15, 17, 19, 21)},
    **{_B + f"x_paired_bootstrap_dice__mutmut_{i}": _INTEGER_COUNTS for i in (12, 14, 18, 20, 22, 24)},
    **{_B + f"x_paired_bootstrap_dice__mutmut_{i}": "the sums have 2*offset columns, so the negative index c - offset "
       "wraps round to the same column as c + offset" for i in (55, 58)},
    **{_B + f"x_bootstrap_mean__mutmut_{i}": _DEFAULT_DTYPE for i in (9, 11)},
    _W + "xǁPooledDiceǁcompute__mutmut_6": _NAN_SPELLING,
    _W + "xǁWeakSegmentationTaskǁ__init____mutmut_11": "ClipTask's default out_channels is 1",
    **{_W + f"xǁWeakSegmentationTaskǁon_validation_epoch_end__mutmut_{i}": _PROGRESS_BAR for i in (32, 36, 38, 39, 40)},
    **{_W + f"xǁWeakSegmentationTaskǁon_validation_epoch_end__mutmut_{i}": "torch.nan_to_num's default nan is 0.0"
       for i in (23, 25)},
    **{_W + f"xǁWeakSegmentationTaskǁon_validation_epoch_end__mutmut_{i}": "self.log's sync_dist defaults to False and "
       "None is false" for i in (33, 37)},
    _W + "xǁWeakSegmentationTaskǁon_validation_epoch_end__mutmut_41": "sync_dist=True averages values that are "
    "already equal on every rank (each compute() is an all-reduce of the sums), so every logged number is the same; "
    "only the extra communication differs (test_ddp.py checks the values across 2 processes)",
    **{_Q + f"x__shape_moments__mutmut_{i}": "astype(None) is astype(float64)" for i in (5, 6, 14)},
    _Q + "x_quality_control__mutmut_83": "astype(None) is astype(float64)",
    **{_Q + f"x_convex_hull_areas__mutmut_{i}": "OpenCV fills and finds points in float64 images too; the count of "
       "non-zero pixels is the same" for i in (9, 11, 15)},
    _Q + "x_convex_hull_areas__mutmut_27": "the hull is counted with count_nonzero: fill value 2 counts as 1",
    **{_Q + f"x_quality_control__mutmut_{i}": "no division warning arises here (NaN operands, never x/0): checked "
       "with numpy warnings as errors in test_qc_thresholds_are_exclusive_and_use_the_image_or_fan_area"
       for i in (92, 93, 94, 95, 119, 120, 121, 122)},
    _Q + "x_quality_control__mutmut_158": "a non-empty frame that is not one component has at least 2 pixels",
    _Q + "x_running_median__mutmut_17": "None assigned into a float array is NaN",
    _Q + "x_running_median__mutmut_33": "nanmedian only raises RuntimeWarnings here",
    **{_T + f"x_polygon_from_rows__mutmut_{i}": _SAME_VALUES for i in (3, 5)},
    **{_T + f"x_read_tracings__mutmut_{i}": _SAME_VALUES for i in (59, 75)},
    **{_T + f"x_tracing_mask__mutmut_{i}": "skimage.draw.polygon takes the already rounded float coordinates the same way"
       for i in (10, 12)},
    **{_T + f"x_read_tracings__mutmut_{i}": "pandas itself skips a UTF-8 byte-order mark, and codec names ignore case"
       for i in (11, 14, 17)},
    **{_S + f"x_choose_masked_frames__mutmut_{i}": "torch.rand's default device is the CPU" for i in (5, 9)},
    _S + "x_choose_masked_frames__mutmut_31": "tensor.to(None) leaves the tensor where it is, as not calling it does",
    **{_S + f"xǁTemporalMaskingTaskǁreconstruction_loss__mutmut_{i}": "the masks' device only matters on an accelerator; "
       "equivalent on this CPU-only machine (choose_masked_frames' device argument is tested with 'meta')" for i in (15, 20)},
    _S + "x_reverse_clips__mutmut_15": "the flags' device only matters on an accelerator; equivalent on this CPU-only machine",
    _S + "x_reverse_clips__mutmut_8": "torch.rand draws from [0, 1): `< p` and `<= p` differ only when a draw equals p "
    "exactly (probability 2**-24 per clip for p = 0.5)",
    _S + "x_blank_frames__mutmut_12": "the fill is float32 on the CPU, as the clips are here: .to(video) changes nothing "
    "on this CPU-only machine",
    **{_S + f"xǁTemporalMaskingTaskǁvalidation_step__mutmut_{i}": _PROGRESS_BAR for i in (17, 21, 25)},
    **{_S + f"xǁTemporalMaskingTaskǁvalidation_step__mutmut_{i}": "Lightning infers the batch size from the batch's "
       "first tensor, the clip, whose first dimension is the same number" for i in (11, 18, 22, 28, 31)},
    **{_V + f"x__disk_volumes_px__mutmut_{i}": "astype(None) / np.zeros default to float64" for i in (7, 9, 18, 24, 26, 119, 121)},
    _V + "x__disk_volumes_px__mutmut_22": "without minlength the bincount still covers every frame that has pixels, "
    "the only ones indexed",
    _V + "x__disk_volumes_px__mutmut_116": "the extra pass only meets slabs the footprint does not overlap (filtered by keep)",
    _V + "x__disk_volumes_px__mutmut_141": "a zero overlap adds a zero weight",
    _V + "x_ejection_fraction__mutmut_12": _NAN_SPELLING,
    **{_V + f"x_heart_period__mutmut_{i}": _NAN_SPELLING for i in (33, 66, 169)},
    **{_V + f"x_find_beats__mutmut_{i}": _NAN_SPELLING for i in (31, 34)},
    **{_V + f"x_heart_period__mutmut_{i}": "polyfit/polyval return float64, so the detrended curve is float64 whatever "
       "the input dtype" for i in (3, 5, 36, 38)},
    **{_V + f"x_heart_period__mutmut_{i}": "element 0 of the cumulative sums is never read (lags >= 1 and n - lag >= 2)"
       for i in (69, 73)},
    _V + "x_heart_period__mutmut_90": "lags below low - 1 are never peaks (lags[inner] >= low) nor a peak's neighbour",
    _V + "x_beats_from_volumes__mutmut_34": "a peak 2 frames from the end leaves one lower frame after it: its ES is the "
    "last frame, with no rise after it, so the beat is dropped as incomplete either way",
    _V + "x_beats_from_volumes__mutmut_37": "with min_beat_frames >= 3 (every caller: 15) only the last peak can be "
    "skipped, so break and continue end the loop alike",
    _V + "x_beats_from_volumes__mutmut_54": "for a beat before the last peak that peak's prominence already guarantees "
    "the rise after ES",
    _V + "x__disk_volumes_px__mutmut_145": "negated slab counts give negated diameters, and the volume uses their squares",
    **{_V + f"x_beats_from_volumes__mutmut_{i}": "volume curves are float64 already" for i in (5, 7)},
    _V + "x_beats_from_volumes__mutmut_13": "an empty curve has no peaks whatever the span",
    _V + "x_beats_from_volumes__mutmut_14": "a flat curve (span 0) has no peaks either way",
    _V + "x_heart_period__mutmut_54": "only a residual SD equal to 1e-6 x the mean to the last bit tells > from >= "
    "(a constant curve has SD 0, below the positive threshold either way)",
    **{_V + f"x_heart_period__mutmut_{i}": "lags only go up to high + 1 <= n // 2 + 1 < n - 1 (n >= 5; shorter curves "
       "return before) and start at low - 1 >= 1: this filter removes nothing" for i in (97, 100, 101)},
    **{_V + f"x_heart_period__mutmut_{i}": "the extra lag (low - 2 or high + 2) is never a peak (lags[inner] must lie "
       "in [low, high]) nor the neighbour of one" for i in (93, 95)},
    _V + "x_heart_period__mutmut_104": "astype(None) is astype(float64)",
    _V + "x_heart_period__mutmut_146": "index 0 is lag low - 1, which is never a peak (lags[inner] >= low)",
    _V + "x_heart_period__mutmut_166": "only a best correlation of exactly 0.3 (to the last bit) tells < from <=",
    _V + "x_heart_period__mutmut_172": "the best peak passes both (best >= 0.3 > 0); another peak would need r exactly "
    "0.8 x best to the last bit",
    **{_V + f"x_heart_period__mutmut_{i}": "at a peak centre >= left and centre > right, so the curvature "
       "left - 2 centre + right is always < 0: the else branch is never taken" for i in (187, 192, 193, 194)},
    **{_V + f"x_heart_period__mutmut_{i}": "with the centre the largest of the three, the parabola's vertex "
       "0.5 (a - b) / (a + b) (a = centre - left >= 0, b = centre - right > 0) lies within half a lag: the clip "
       "bounds are never reached" for i in (198, 199, 204, 205)},
    _V + "x_find_beats__mutmut_8": "fps == 0 (or -0.0) is falsy and never reaches the comparison, so > 0 and >= 0 "
    "accept the same values",
    **{_V + f"x_find_beats__mutmut_{i}": "choose_ed_es passes float64 areas; for an int64 curve every step gives the "
       "same numbers (np.interp and np.where return float64, integer differences are exact)" for i in (12, 14)},
    _V + "x_find_beats__mutmut_105": "two local minima are always at least 2 frames apart (a maximum lies between), "
    "so a spacing of 2 removes no trough that a spacing of 1 keeps",
    **{_V + f"x_{f}__mutmut_{i}": "fps == 0 (or -0.0) is falsy and never reaches the comparison, so > 0 and >= 0 "
       "accept the same values" for f, i in (("choose_ed_es", 12), ("ed_es_volumes", 8))},
    **{_V + f"x_choose_ed_es__mutmut_{i}": "find_beats and glitch_frames convert the areas to float64 themselves"
       for i in (16, 18)},
    **{_V + f"x_choose_ed_es__mutmut_{i}": "beats_from_volumes converts the volumes to float64 itself, np.where with "
       "-inf/inf gives float64, and ed_es_volumes reads its own volumes" for i in (21, 23)},
    **{_V + f"x_ed_es_volumes__mutmut_{i}": "a 'single' choice holds one (ED, ES) pair, so len(beats) > 1 is already "
       "false" for i in (43, 44)},
    _V + "x_ed_es_volumes__mutmut_47": "the spacing is a positive median or the period (finite or NaN): 60 fps / NaN "
    "is NaN as well",
    **{_V + f"x_ed_es_volumes__mutmut_{i}": _NAN_SPELLING for i in (54, 66, 86, 178)},
    **{_V + f"x_glitch_frames__mutmut_{i}": "glitch_frames gets float64 or int64 curves: the median of 5 integers is "
       "one of them, so every difference and comparison is the same" for i in (3, 5)},
    _T + "x_read_tracings__mutmut_47": "pandas' str.replace treats regex=None like the default here (checked: 'a.avi' -> 'a')",
    _T + "x_read_tracings__mutmut_54": "the pattern is matched with case=False",
    **{_T + f"x_read_tracings__mutmut_{i}": "the order of the returned dict is not used: load_index looks videos up by name"
       for i in (105, 107, 108)},
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}


def scratch_copy(target: Target, work_dir: Path, keep_mutants: bool = False) -> Path:
    """The working tree's tracked and untracked (not ignored) files, plus a [tool.mutmut] section.
    ``keep_mutants`` refreshes the files of an earlier copy but keeps its ``mutants/`` (mutmut's
    mutated tree and recorded results)."""
    root = work_dir / target.name
    if not keep_mutants:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
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
    if target.unmutated:
        source = root / target.source
        lines = source.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.startswith(target.unmutated):
                # The pragma goes on the header's last line (the one ending in ':'), also when
                # the signature spans several lines.
                end = next(j for j in range(i, len(lines)) if lines[j].rstrip().endswith(":"))
                lines[end] = lines[end].rstrip() + "  # pragma: no mutate block\n"
        source.write_text("".join(lines))
    return root


def _not_killed(exit_code) -> bool:
    return STATUS.get(exit_code, "suspicious") in ("survived", "no tests", "suspicious", "skipped")


def run_target(target: Target, work_dir: Path, children: int, previous: dict | None = None) -> dict:
    """Mutate ``target`` and run its tests. With ``previous`` (this module's row of an earlier
    complete run whose scratch copy is still in ``work_dir``), only the mutants that were not
    killed then are run again, against the working tree's current tests; the others keep their
    recorded results, and ``seconds`` adds this run's time to the earlier one's."""
    meta = work_dir / target.name / "mutants" / (target.source + ".meta")
    rerun: list[str] = []
    if previous is not None:
        if previous.get("status") != "complete" or not meta.is_file():
            return {**previous, "status": f"cannot rerun survivors: no complete earlier run in {work_dir / target.name}"}
        rerun = sorted(k for k, c in json.loads(meta.read_text())["exit_code_by_key"].items() if _not_killed(c))
    root = scratch_copy(target, work_dir, keep_mutants=previous is not None)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutated copy must win
    env.update(UNILVSEG_CACHE=str(root / ".cache"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.perf_counter()
    log = root / ("mutmut-rerun.log" if previous is not None else "mutmut.log")
    code = 0
    if previous is None or rerun:
        with open(log, "w") as handle:
            code = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *rerun],
                                  cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started + (previous["seconds"] if previous is not None else 0)
    if code != 0 or not meta.is_file():
        return {"module": target.source, "status": f"mutmut failed (exit {code}, see {log})", "seconds": round(seconds)}
    results = json.loads(meta.read_text())["exit_code_by_key"]
    counts: dict[str, int] = {}
    survivors = []
    for key, exit_code in sorted(results.items()):
        status = STATUS.get(exit_code, "suspicious")
        counts[status] = counts.get(status, 0) + 1
        if _not_killed(exit_code):
            diff = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=root, env=env,
                                  capture_output=True, text=True).stdout
            survivors.append({"name": key, "status": status, "diff": diff.strip()})
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)
    equivalent = sum(1 for s in survivors if s["name"] in EQUIVALENT)
    not_killed = len(survivors) - equivalent
    scored = killed + not_killed
    return {
        "module": target.source, "status": "complete", "seconds": round(seconds), "mutants": len(results),
        **({"survivors_rerun": len(rerun)} if previous is not None else {}),
        "killed": killed, "survived": counts.get("survived", 0), "no_tests": counts.get("no tests", 0),
        "equivalent": equivalent, "score": round(100.0 * killed / scored, 1) if scored else float("nan"),
        "survivors": survivors,
    }


def rescore(row: dict) -> dict:
    """Equivalent count and score from the survivors and the current ``EQUIVALENT`` table."""
    if row.get("status") != "complete":
        return row
    survivors = row.get("survivors", [])
    equivalent = sum(1 for s in survivors if s["name"] in EQUIVALENT)
    scored = row["killed"] + len(survivors) - equivalent
    return {**row, "equivalent": equivalent, "score": round(100.0 * row["killed"] / scored, 1) if scored else float("nan")}


def write_report(rows: list[dict]) -> None:
    rows = [rescore(row) for row in rows]
    columns = ["module", "status", "mutants", "killed", "survived", "no_tests", "equivalent", "score", "seconds"]
    csv = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    write_text("\n".join(csv) + "\n", RESULTS / "mutation.csv")
    lines = ["# Mutation testing (mutmut 3)", "",
             "`nice -n 10 python -m benchmarks.mutation` (2-core shared CPU). Score = killed / (killed + survivors "
             "that are not equivalent); timeouts count as killed, 'no tests' as survivors.", "",
             "| module | status | mutants | killed | survived | no tests | equivalent | score % | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    # The hand-written account of the runs (which ran when, what is left and why) survives every rewrite.
    if STATUS.is_file():
        lines += ["", STATUS.read_text().strip()]
    lines += ["", "Tests run per module (mutmut then runs, for each mutant, only the selected tests that reach "
              "the mutated function):", ""]
    for target in TARGETS:
        note = ""
        if target.unmutated:
            headers = "`, `".join(t.strip() for t in target.unmutated)
            note = (f"; left unmutated: `{headers}...` (Lightning's save_hyperparameters reads the caller's frame, "
                    "which mutmut's trampoline replaces)")
        lines.append(f"- `{target.source}`: `pytest {' '.join(target.tests)}`{note}")
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
    parser.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()) / "unilvseg-mutation",
                        help="scratch copies of the mutated modules (default: unilvseg-mutation in the temporary folder)")
    parser.add_argument("--max_children", type=int, default=2, help="mutants tested at once (mutmut --max-children)")
    parser.add_argument("--rerun_survivors", action="store_true",
                        help="rerun only the mutants the last run of each module did not kill (its scratch copy in "
                             "--work_dir is reused), e.g. after adding tests")
    parser.add_argument("--report_only", action="store_true", help="rewrite the report from mutation.json (after triage)")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - {t.name for t in TARGETS}
    if unknown:
        print(f"error: unknown --modules {' '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    previous = {}
    if (RESULTS / "mutation.json").is_file():  # keep the modules not rerun this time
        previous = {row["module"]: row for row in json.loads((RESULTS / "mutation.json").read_text())}
    if args.report_only:
        write_report([previous[t.source] for t in TARGETS if t.source in previous])
        return 0
    for target in TARGETS:
        if target.name not in args.modules:
            continue
        print(f"mutating {target.source} ...", flush=True)
        earlier = previous.get(target.source, {}) if args.rerun_survivors else None
        previous[target.source] = run_target(target, args.work_dir, args.max_children, earlier)
        row = previous[target.source]
        print({k: v for k, v in row.items() if k != "survivors"}, flush=True)
        rows = [previous[t.source] for t in TARGETS if t.source in previous]
        write_text(json.dumps(rows, indent=1) + "\n", RESULTS / "mutation.json")
        write_report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
