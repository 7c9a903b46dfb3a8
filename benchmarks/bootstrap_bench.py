"""Bootstrap benchmark: vectorised ``unilvseg.evaluation.bootstrap`` vs EchoNet-Dynamic's published
per-resample Python loop, on 1,276 synthetic test videos (EchoNet-Dynamic's test split size)
and 10,000 resamples.

The published evaluation calls ``echonet.utils.bootstrap`` three times (overall on the 2N traced
frames, large/ED and small/ES on N frames each); each call loops over resamples in Python,
drawing ``np.random.choice`` indices and summing with the builtin ``sum``. The loop is
re-implemented faithfully below and timed for overall + ED; ES costs the same as ED (same N),
so the loop's total for all three is reported as overall + 2·ED. Ours is timed for all three
statistics in both conventions. Median of ``repeats`` runs after one warm-up run.

Like with like: the ``reference`` convention computes the loop's statistic (4N indices per
resample: 2N frames overall, N for ED, N for ES) and is the comparison. The default ``video``
convention resamples videos, N indices per resample for all three statistics: a different
(and cheaper) statistic, reported as such, not as a speed-up. The reference convention's bound
is drawing its 4N random indices per resample; the run times that floor on its own.

    OMP_NUM_THREADS=1 python benchmarks/bootstrap_bench.py            # full (about a minute)
    OMP_NUM_THREADS=1 python benchmarks/bootstrap_bench.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unilvseg.evaluation.bootstrap import REFERENCE, VIDEO, bootstrap_dice  # noqa: E402

N_VIDEOS = 1276
SAMPLES = 10_000
RESULTS = Path(__file__).resolve().parent / "results" / "bootstrap_bench.json"


def synthetic_counts(n_videos: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video (ED, ES) pixel counts resembling 112x112 EchoNet tracings at ~0.9 Dice."""
    rng = np.random.default_rng(seed)
    ed_area = rng.normal(1100, 300, n_videos).clip(300, 2500)
    true = np.stack([ed_area, ed_area * rng.uniform(0.4, 0.8, n_videos)], axis=1).round().astype(np.int64)
    inter = (true * rng.uniform(0.8, 0.97, true.shape)).round().astype(np.int64)
    pred = inter + rng.integers(0, 150, true.shape)
    return inter, pred, true


# ---- faithful re-implementation of echonet.utils.bootstrap / dice_similarity_coefficient ----
def _published_dice(inter, union):
    return 2 * sum(inter) / (sum(union) + sum(inter))


def _published_bootstrap(a, b, func, samples=10000):
    a = np.array(a)
    b = np.array(b)
    bootstraps = []
    for _ in range(samples):
        ind = np.random.choice(len(a), len(a))
        bootstraps.append(func(a[ind], b[ind]))
    bootstraps = sorted(bootstraps)
    return func(a, b), bootstraps[round(0.05 * len(bootstraps))], bootstraps[round(0.95 * len(bootstraps))]


def _time(fn, repeats: int) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds of this process, last result) after one warm-up.

    CPU time is reported too because on a shared machine wall time includes waiting for a core.
    """
    result = fn()  # warm-up (imports, page faults)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def run(quick: bool = False, n_videos: int = N_VIDEOS, samples: int | None = None, repeats: int | None = None) -> dict:
    """Time both implementations; returns a JSON-serialisable dict (seconds, speedups, intervals)."""
    samples = samples or (1_000 if quick else SAMPLES)
    repeats = repeats or (1 if quick else 3)
    inter, pred, true = synthetic_counts(n_videos)
    union = pred + true - inter  # what EchoNet accumulates

    def published_overall():
        np.random.seed(0)
        return _published_bootstrap(np.concatenate([inter[:, 0], inter[:, 1]]), np.concatenate([union[:, 0], union[:, 1]]), _published_dice, samples)

    def published_ed():
        np.random.seed(1)
        return _published_bootstrap(inter[:, 0], union[:, 0], _published_dice, samples)

    overall_s, overall_cpu, loop_overall = _time(published_overall, repeats)
    ed_s, ed_cpu, loop_ed = _time(published_ed, repeats)
    loop_total_s = overall_s + 2 * ed_s  # ES has the same N and cost as ED
    loop_total_cpu = overall_cpu + 2 * ed_cpu

    video_s, video_cpu, ours_video = _time(
        lambda: bootstrap_dice(inter, pred, true, samples, np.random.default_rng(0), convention=VIDEO), repeats
    )
    reference_s, reference_cpu, ours_reference = _time(
        lambda: bootstrap_dice(inter, pred, true, samples, np.random.default_rng(0), convention=REFERENCE), repeats
    )
    # The floor of the reference convention: only drawing its indices (2N + N + N per resample,
    # in the same chunks), nothing summed. What is left above it is the bincount and the sums.
    from unilvseg.evaluation.bootstrap import resample_indices

    def draw_only():
        rng = np.random.default_rng(0)
        for n in (2 * n_videos, n_videos, n_videos):
            for _ in resample_indices(rng, n, samples):
                pass

    draw_s, _, _ = _time(draw_only, repeats)
    return {
        "benchmark": "bootstrap_dice",
        "n_videos": n_videos,
        "samples": samples,
        "repeats": repeats,
        "statistic": "median seconds after 1 warm-up",
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}, numpy {np.__version__}",
        "published_loop_overall_s": overall_s,
        "published_loop_ed_s": ed_s,
        "published_loop_total_s": loop_total_s,
        "ours_video_total_s": video_s,
        "ours_reference_total_s": reference_s,
        "reference_index_draw_only_s": draw_s,
        "indices_per_resample_reference": 4 * n_videos,
        "indices_per_resample_video": n_videos,
        "speedup_reference_vs_loop": loop_total_s / reference_s,
        "speedup_video_vs_loop": loop_total_s / video_s,
        "published_loop_total_cpu_s": loop_total_cpu,
        "ours_reference_total_cpu_s": reference_cpu,
        "ours_video_total_cpu_s": video_cpu,
        "cpu_speedup_reference_vs_loop": loop_total_cpu / reference_cpu,
        "cpu_speedup_video_vs_loop": loop_total_cpu / video_cpu,
        # Same convention, different random streams: the intervals should agree to ~1e-4.
        "published_loop_overall_interval": [float(v) for v in loop_overall],
        "published_loop_ed_interval": [float(v) for v in loop_ed],
        "ours_reference_overall_interval": [ours_reference["overall"].estimate, ours_reference["overall"].low, ours_reference["overall"].high],
        "ours_reference_ed_interval": [ours_reference["ed"].estimate, ours_reference["ed"].low, ours_reference["ed"].high],
        "ours_video_overall_interval": [ours_video["overall"].estimate, ours_video["overall"].low, ours_video["overall"].high],
    }


def _table(result: dict) -> str:
    rows = [
        ("published loop, overall (2N frames)", result["published_loop_overall_s"], None, ""),
        ("published loop, ED (N frames)", result["published_loop_ed_s"], None, ""),
        ("published loop, overall+ED+ES", result["published_loop_total_s"], result["published_loop_total_cpu_s"], "1.0x"),
        ("ours, reference convention, all 3", result["ours_reference_total_s"], result["ours_reference_total_cpu_s"],
         f"{result['speedup_reference_vs_loop']:.0f}x / {result['cpu_speedup_reference_vs_loop']:.0f}x"),
        ("ours, reference: drawing indices only", result["reference_index_draw_only_s"], None,
         f"{result['published_loop_total_s'] / result['reference_index_draw_only_s']:.0f}x (bound)"),
        # Not the same statistic: N video draws per resample where the loop draws 4N frames.
        ("ours, video convention (N draws, not 4N)", result["ours_video_total_s"], result["ours_video_total_cpu_s"],
         f"{result['speedup_video_vs_loop']:.0f}x / {result['cpu_speedup_video_vs_loop']:.0f}x"),
    ]
    lines = [
        f"bootstrap: {result['n_videos']} videos x {result['samples']} resamples, median of {result['repeats']} ({result['machine']})",
        f"{'implementation':42s} {'wall s':>8s} {'cpu s':>8s} {'speedup wall / cpu':>19s}",
    ]
    lines += [
        f"{name:42s} {wall:8.3f} {'' if cpu is None else f'{cpu:8.3f}':>8s} {speedup:>19s}" for name, wall, cpu, speedup in rows
    ]
    lo, hi = result["published_loop_overall_interval"][1:], result["ours_reference_overall_interval"][1:]
    lines.append(f"overall 5-95%: published loop {lo[0]:.4f}-{lo[1]:.4f}, ours (reference) {hi[0]:.4f}-{hi[1]:.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 resamples, 1 repeat")
    parser.add_argument("--no_save", action="store_true", help=f"do not write {RESULTS.relative_to(RESULTS.parents[2])}")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(_table(result))
    print(json.dumps(result))
    if not args.quick and not args.no_save:
        from unilvseg.io import write_json

        write_json(result, RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
