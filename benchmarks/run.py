"""The benchmark suite: every benchmark against its published baseline, in one run, one report.

    python -m benchmarks.run [--quick | --smoke] [--device cpu|cuda] [--only data,train,inference,evaluation]
                             [--threads 2] [--out DIR]

Sections (each figure a median of several timed repeats after warm-up; the baseline is measured
in the same run, on the same data, by the same harness):

* ``data``: training samples/s of our loader vs the published way (``benchmarks/data_bench.py``),
  weak and SSL mode with augmentation, 0 and 2 DataLoader workers; peak RSS of each loader.
* ``train``: one training step (forward + backward + Adam) per configuration, each in a fresh
  process (``benchmarks/train_step.py`` on CPU, ``--train-child`` here on CUDA) so its peak memory
  is its own: 3d_unet, 3d_unet_small and super-image resnet18 (T = 36, the nearest square grid
  to 32, and T = 16), batch 1, 112x112, fp32, ``--threads`` threads. The published code's
  configuration of the main network (plain fp32, torch's default threads, CPU fast path off via
  UNILVSEG_FAST_CPU=0) runs next to ours. On CUDA: fp32 (reference) vs bf16 autocast, and for
  the main network channels_last_3d, torch.compile and batch 8 as well; FLOPs per step from
  ``torch.utils.flop_counter`` give achieved TFLOP/s and the fraction of the GPU's bf16 peak.
* ``inference``: frames/s of full-video prediction vs the published loop (``inference_bench.py``).
* ``evaluation``: bootstrap of 1,276 videos x 10,000 resamples vs the published per-resample loop
  (``bootstrap_bench.py``).

Writes ``<out>/<device>-<date>[-quick|-smoke][-only-...].json`` and ``.md`` (a summary table with
each target and whether it was met, then one table per section) atomically. ``--quick`` fits in
10 minutes on 2 CPU cores (fewer videos and repeats, T = 16 on CPU, the full-width 3D U-Net timed
once at T = 16); ``--smoke`` shrinks everything to seconds (tiny networks, 2 videos, 1 repeat) to
test the harness, its figures mean nothing. Exit status 1 if a section failed (its error is in
the report), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from unilvseg.errors import UserError  # noqa: E402

SECTIONS = ("data", "train", "inference", "evaluation")
DEVICES = ("cpu", "cuda")
RESULTS_DIR = common.ROOT / "benchmarks" / "results"

#: Speed-up over the baseline each benchmark should reach, and the GPU utilisation target.
TARGETS = {"data": 10.0, "train": 1.5, "inference": 3.0, "evaluation": 50.0}
GPU_PEAK_FRACTION_TARGET = 0.30

# (encoder, frames). Super-image networks tile T frames into a square grid, so T must be a
# perfect square: 36 stands in for 32.
FULL_GRID = (("3d_unet", 32), ("3d_unet", 16), ("3d_unet_small", 32), ("3d_unet_small", 16),
             ("resnet18", 36), ("resnet18", 16))

#: CUDA training variants: autocast bf16, channels_last_3d memory format, torch.compile, cuDNN autotuning.
CUDA_VARIANTS = {
    "fp32": dict(amp=False, channels_last=False, compile=False, cudnn_benchmark=False),
    "bf16": dict(amp=True, channels_last=False, compile=False, cudnn_benchmark=True),
    "bf16_channels_last": dict(amp=True, channels_last=True, compile=False, cudnn_benchmark=True),
    "bf16_compile": dict(amp=True, channels_last=False, compile=True, cudnn_benchmark=True),
}

SETTINGS = {
    "full": {
        "data": dict(quick=False, workers=(0, 2)),
        "train": dict(
            grid=[(e, t, 5) for e, t in FULL_GRID], main=("3d_unet", 32), size=112, batch=1, warmup=1,
            cuda_grid=FULL_GRID, cuda_repeats=20, cuda_warmup=3, cuda_main_variants=True, cuda_big_batch=8,
        ),
        "inference": dict(quick=False, repeats=None),
        "evaluation": dict(n_videos=1276, samples=10_000, repeats=3),
    },
    "quick": {
        "data": dict(quick=True, workers=(0, 2)),
        "train": dict(
            grid=[("3d_unet", 16, 2), ("3d_unet_small", 16, 3), ("resnet18", 16, 3)], main=("3d_unet", 16),
            size=112, batch=1, warmup=1,
            cuda_grid=FULL_GRID, cuda_repeats=10, cuda_warmup=3, cuda_main_variants=True, cuda_big_batch=8,
        ),
        "inference": dict(quick=True, repeats=None),
        "evaluation": dict(n_videos=1276, samples=10_000, repeats=1),
    },
    "smoke": {
        "data": dict(quick=True, workers=(0,), videos=2, samples=4, repeats=1, modes=("weak",)),
        "train": dict(
            grid=[("3d_unet_tiny", 16, 1)], main=("3d_unet_tiny", 16), size=32, batch=1, warmup=1, in_process=True,
            reference_threads=1, peak_size=256,
            cuda_grid=(("3d_unet_tiny", 16),), cuda_repeats=1, cuda_warmup=1, cuda_main_variants=False, cuda_big_batch=None,
        ),
        "inference": dict(
            quick=True, repeats=1,
            config=dict(encoder="3d_unet_tiny", frames=16, video_lengths=(20, 24), repeats=1),
        ),
        "evaluation": dict(n_videos=40, samples=20, repeats=1),
    },
}


def _log(message: str) -> None:
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _speed_ratio(ours: float | None, baseline: float | None) -> float | None:
    """ours / baseline for rates (None when either is missing or the baseline is 0)."""
    if ours is None or not baseline:
        return None
    return ours / baseline


# =============================================================================== data
def section_data(settings: dict, device: str, threads: int) -> dict:
    from benchmarks import data_bench

    scratch = Path(tempfile.mkdtemp(prefix="unilvseg-bench-data-"))
    try:
        data_path = None
        if settings.get("videos"):
            from unilvseg.data.phantom import generate_phantom

            data_path = generate_phantom(scratch / "phantom", videos=settings["videos"], seed=0,
                                         min_frames=40, max_frames=48)
        accepted = inspect.signature(data_bench.run).parameters
        extra = {k: settings[k] for k in ("samples", "repeats", "modes") if settings.get(k) is not None and k in accepted}
        return data_bench.run(quick=settings["quick"], data_path=data_path, workers=tuple(settings["workers"]), **extra)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# =============================================================================== train
def train_child(spec: dict) -> dict:
    """Time training steps of one configuration in this (fresh) process; used for CUDA variants.

    ``spec``: device, encoder, frames, size, batch, threads, repeats, warmup and the switches of
    ``CUDA_VARIANTS`` (amp, channels_last, compile, cudnn_benchmark). Runs on CPU too (tests).
    """
    import torch
    import torch.nn.functional as F

    from unilvseg.models import build_network

    device = torch.device(spec["device"])
    torch.set_num_threads(int(spec["threads"]))
    torch.backends.cudnn.benchmark = bool(spec["cudnn_benchmark"])
    torch.manual_seed(0)
    batch, size, frames = int(spec["batch"]), int(spec["size"]), int(spec["frames"])
    network = build_network(spec["encoder"], frames=frames).to(device)
    clip = torch.randn(batch, 3, size, size, frames, device=device)
    target = (torch.rand(batch, 1, size, size, frames, device=device) > 0.5).float()
    if spec["channels_last"]:
        network = network.to(memory_format=torch.channels_last_3d)
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    model = torch.compile(network) if spec["compile"] else network

    def autocast():
        if spec["amp"]:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = model(clip)
        F.binary_cross_entropy_with_logits(logits.float(), target).backward()
        optimizer.step()

    synchronize = common.cuda_synchronizer(device)
    common.reset_cuda_peak(device)
    load_before = common.load_average()
    started = time.perf_counter()
    for _ in range(int(spec["warmup"])):  # includes torch.compile and cuDNN autotuning
        step()
    if synchronize:
        synchronize()
    warmup_s = time.perf_counter() - started
    timing = common.time_repeats(step, int(spec["repeats"]), 0, synchronize)
    return {
        **timing.as_dict(),
        "warmup": int(spec["warmup"]),
        "warmup_s": round(warmup_s, 3),
        "peak_cuda_mb": common.cuda_max_memory_mb(device),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "parameters": sum(p.numel() for p in network.parameters()),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else common.cpu_model(),
        "load_before": load_before[0] if load_before else None,
        "load_after": (common.load_average() or [None])[0],
    }


def _train_row(encoder: str, frames: int, size: int, batch: int, config: str, device: str, threads: int, raw: dict,
               flops: int | None, peak_tflops: float | None) -> dict:
    step_s = raw["median_s"]
    achieved = flops / step_s / 1e12 if flops and step_s else None
    return {
        "encoder": encoder, "frames": frames, "size": size, "batch": batch, "config": config, "device": device,
        "precision": raw.get("precision"), "threads": threads, "median_step_s": step_s, "step_s": raw.get("runs_s"), "median_cpu_s": raw.get("median_cpu_s"),
        "clips_per_s": round(batch / step_s, 3) if step_s else None,
        "flops_per_step": flops, "achieved_tflops": round(achieved, 4) if achieved is not None else None,
        "fraction_of_bf16_peak": round(achieved / peak_tflops, 4) if achieved is not None and peak_tflops else None,
        "fraction_of_measured_peak": None,  # filled by section_train from the measured matmul peaks
        "peak_rss_mb": raw.get("peak_rss_mb"), "peak_rss_sampled_mb": raw.get("peak_rss_sampled_mb"),
        "peak_cuda_mb": round(raw["peak_cuda_mb"], 1) if raw.get("peak_cuda_mb") is not None else None,
        "load_before": raw.get("load_before"), "load_after": raw.get("load_after"),
        "details": {k: raw[k] for k in ("fast_cpu", "fast_cpu_env", "minor_faults_per_step", "parameters",
                                         "warmup_s", "device_name", "quiet") if k in raw},
    }


def _train_step_in_process(argv: list[str]) -> dict:
    """``benchmarks.train_step.main(argv)`` in this process (smoke mode: no interpreter start-up),
    with the environment variables and torch thread count it changes put back afterwards."""
    import io
    import os

    import torch

    from benchmarks import train_step

    saved_env, saved_threads = dict(os.environ), torch.get_num_threads()
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            status = train_step.main(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(saved_threads)
    lines = [line for line in output.getvalue().splitlines() if line.startswith("{")]
    if status != 0 or not lines:
        raise RuntimeError(f"benchmarks.train_step {' '.join(argv)} failed with status {status}")
    return json.loads(lines[-1])


def _cpu_train_raw(encoder, frames, size, batch, repeats, warmup, threads, reference: bool, in_process: bool,
                   bf16: bool = False) -> dict:
    argv = ["--encoder", encoder, "--frames", str(frames), "--size", str(size), "--batch", str(batch),
            "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    extra = {}
    if bf16:
        argv += ["--precision", "bf16"]
    if reference:
        argv += ["--fast", "off", "--precision", "fp32"]
        extra["UNILVSEG_FAST_CPU"] = "0"
    if in_process:
        raw = _train_step_in_process(argv)
    else:
        raw = common.run_json_subprocess(["-m", "benchmarks.train_step", *argv], common.single_thread_env(threads, **extra))
    # train_step rounds its medians to milliseconds; keep them as they come.
    raw["median_s"] = raw["median_step_s"]
    raw["runs_s"] = raw.get("step_s")
    return raw


def section_train(settings: dict, device: str, threads: int) -> dict:
    from unilvseg.hardware import cpu_has_native_bf16

    size, batch = settings["size"], settings["batch"]
    main = tuple(settings["main"])
    flops_cache: dict[tuple, int | None] = {}

    def flops(encoder, frames, n):
        key = (encoder, frames, n)
        if key not in flops_cache:
            try:
                flops_cache[key] = common.train_step_flops(encoder, frames, size, n)
            except Exception as error:  # FLOPs are a bonus; never lose the timing for them
                _log(f"FLOP count failed for {key}: {error}")
                flops_cache[key] = None
        return flops_cache[key]

    rows, errors = [], []

    def attempt(description: str, produce) -> None:
        _log(f"train: {description}")
        try:
            rows.append(produce())
        except Exception as error:
            errors.append({"config": description, "error": f"{type(error).__name__}: {error}"[-3000:]})
            _log(f"train: {description} FAILED: {error}")

    peak = None
    if device == "cpu":
        reference_threads = settings.get("reference_threads") or common.physical_cores()  # torch's default pool
        for encoder, frames, repeats in settings["grid"]:
            # The main network also runs the opt-in bf16 autocast (--precision bf16-mixed) where it is native.
            configs = [("reference", reference_threads, True), ("ours", threads, False)] if (encoder, frames) == main \
                else [("ours", threads, False)]
            if (encoder, frames) == main and cpu_has_native_bf16():
                configs.append(("ours_bf16", threads, False))
            for config, n_threads, reference in configs:
                attempt(
                    f"{encoder} T={frames} {config} ({n_threads} threads)",
                    lambda e=encoder, f=frames, r=repeats, c=config, t=n_threads, ref=reference: _train_row(
                        e, f, size, batch, c, "cpu", t,
                        _cpu_train_raw(e, f, size, batch, r, settings["warmup"], t, ref,
                                       settings.get("in_process", False), bf16=c == "ours_bf16"), flops(e, f, batch), None),
                )
        reference_config = {"config": "reference", "encoder": main[0], "frames": main[1], "threads": reference_threads,
                            "fast_cpu": False, "precision": "fp32"}
    else:
        import torch

        peak = common.bf16_peak_tflops(torch.cuda.get_device_name(0))
        plans = []
        for encoder, frames in settings["cuda_grid"]:
            plans += [(encoder, frames, batch, name) for name in ("fp32", "bf16")]
            if (encoder, frames) == main and settings["cuda_main_variants"]:
                plans += [(encoder, frames, batch, name) for name in ("bf16_channels_last", "bf16_compile")]
            if (encoder, frames) == main and settings.get("cuda_big_batch"):
                # Its fp32 baseline at the same batch: speed-ups compare equal batch sizes.
                plans += [(encoder, frames, settings["cuda_big_batch"], name) for name in ("fp32", "bf16")]
        for encoder, frames, n, name in plans:
            config = name if n == batch else f"{name}_batch{n}"

            def produce(e=encoder, f=frames, n=n, name=name, config=config):
                spec = dict(device="cuda", encoder=e, frames=f, size=size, batch=n, threads=threads,
                            repeats=settings["cuda_repeats"],
                            warmup=settings["cuda_warmup"] + (2 if CUDA_VARIANTS[name]["compile"] else 0),
                            **CUDA_VARIANTS[name])
                raw = common.run_json_subprocess(["-m", "benchmarks.run", "--train-child", json.dumps(spec)],
                                                 common.single_thread_env(threads))
                return _train_row(e, f, size, n, config, "cuda", threads, raw, flops(e, f, n), peak)

            attempt(f"{encoder} T={frames} batch {n} {name}", produce)
        reference_config = {"config": "fp32", "encoder": main[0], "frames": main[1], "precision": "fp32",
                            "cudnn_benchmark": False, "compile": False}
    # The machine's own limit: a large matmul in each precision, on the device the steps ran on.
    measured = {}
    for dtype in ("float32", "bfloat16"):
        if dtype == "bfloat16" and device == "cpu" and not cpu_has_native_bf16():
            continue
        try:
            measured[dtype] = round(common.matmul_peak_tflops(device, dtype, size=settings.get("peak_size", 2048), threads=threads), 4)
        except Exception as error:  # a missing kernel must not lose the section
            errors.append({"config": f"matmul peak {dtype}", "error": f"{type(error).__name__}: {error}"[-500:]})
    for row in rows:
        precision = "bfloat16" if "bf16" in str(row.get("precision") or row.get("config")) else "float32"
        if row.get("achieved_tflops") is not None and measured.get(precision):
            row["fraction_of_measured_peak"] = round(row["achieved_tflops"] / measured[precision], 4)
    return {
        "benchmark": "train_step",
        "device": device,
        "main": list(main),
        "size": size,
        "optimizer": "Adam(lr=1e-4)",
        "loss": "binary_cross_entropy_with_logits",
        "reference_config": reference_config,
        "gpu_bf16_peak_tflops": peak,
        "measured_matmul_peak_tflops": measured,
        "rows": rows,
        "errors": errors,
    }


# =============================================================================== inference
def section_inference(settings: dict, device: str, threads: int) -> dict:
    import torch

    from benchmarks import inference_bench

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    replaced = settings.get("config")
    original = getattr(inference_bench, "QUICK", None)
    try:
        if replaced is not None:  # smoke: shrink the module's quick configuration for this call
            inference_bench.QUICK = dict(replaced)
        return inference_bench.run(quick=settings["quick"], device=device, repeats=settings.get("repeats"))
    finally:
        if replaced is not None:
            inference_bench.QUICK = original
        torch.set_num_threads(previous)


# =============================================================================== evaluation
def section_evaluation(settings: dict, device: str, threads: int) -> dict:
    from benchmarks import bootstrap_bench

    return bootstrap_bench.run(quick=False, n_videos=settings["n_videos"], samples=settings["samples"],
                               repeats=settings["repeats"])


RUNNERS = {"data": section_data, "train": section_train, "inference": section_inference, "evaluation": section_evaluation}


# =============================================================================== summary
def _comparison(section, benchmark, ours, baseline, unit, speedup, target, target_text=None) -> dict:
    return {
        "section": section, "benchmark": benchmark, "ours": ours, "baseline": baseline, "unit": unit,
        "speedup": round(speedup, 3) if speedup is not None else None,
        "target": target, "target_text": target_text or (f">= {target:g}x" if target is not None else ""),
        "met": (speedup >= target) if speedup is not None and target is not None else None,
    }


def summarise(sections: dict) -> list[dict]:
    """One row per comparison against a baseline: ours, baseline, speed-up, target, met."""
    rows = []
    data = sections.get("data") or {}
    for row in data.get("rows", []):
        if row.get("loader") not in ("ours", "ours_uint8"):
            continue
        base = next((r for r in data["rows"] if r.get("loader") == "published" and r.get("mode") == row.get("mode")
                     and r.get("workers") == row.get("workers")), None)
        base_rate = base and base.get("samples_per_s")
        handover = ", uint8 hand-over" if row.get("loader") == "ours_uint8" else ""
        rows.append(_comparison("data", f"{row['mode']} samples/s, {row['workers']} workers{handover}", row.get("samples_per_s"),
                                base_rate, "samples/s", _speed_ratio(row.get("samples_per_s"), base_rate), TARGETS["data"]))

    train = sections.get("train") or {}
    train_rows = train.get("rows", [])
    main = tuple(train.get("main") or ())
    baseline_name = (train.get("reference_config") or {}).get("config")
    unbatched = lambda config: config.split("_batch")[0]  # noqa: E731 - "bf16_batch8" -> "bf16"
    for row in train_rows:
        if unbatched(row["config"]) == baseline_name:
            continue
        # The baseline at the same batch size: a batch-8 row against a batch-1 baseline would
        # credit the batch, not the configuration.
        base = next((r for r in train_rows if unbatched(r["config"]) == baseline_name and r["encoder"] == row["encoder"]
                     and r["frames"] == row["frames"] and r["batch"] == row["batch"]), None)
        name = f"{row['encoder']} T={row['frames']} {row['config']}"  # config names a batch other than 1
        if base is not None:
            rows.append(_comparison("train", f"{name} clips/s", row.get("clips_per_s"), base.get("clips_per_s"), "clips/s",
                                    _speed_ratio(row.get("clips_per_s"), base.get("clips_per_s")), TARGETS["train"]))
        if row["device"] == "cuda" and row["config"].startswith("bf16") and (row["encoder"], row["frames"]) == main:
            fraction = row.get("fraction_of_bf16_peak")
            rows.append(_comparison("train", f"{name} TFLOP/s of bf16 peak", row.get("achieved_tflops"),
                                    train.get("gpu_bf16_peak_tflops"), "TFLOP/s", fraction, GPU_PEAK_FRACTION_TARGET,
                                    f">= {GPU_PEAK_FRACTION_TARGET:.0%} of bf16 peak"))

    inference = sections.get("inference") or {}
    results = inference.get("results", {})
    base_rate = (results.get("published") or {}).get("frames_per_s")
    for name, result in results.items():
        if name != "published":
            rows.append(_comparison("inference", f"{inference.get('encoder')} {name} frames/s", result.get("frames_per_s"),
                                    base_rate, "frames/s", _speed_ratio(result.get("frames_per_s"), base_rate),
                                    TARGETS["inference"]))

    evaluation = sections.get("evaluation") or {}
    loop = evaluation.get("published_loop_total_s")
    for convention in ("reference", "video"):
        ours = evaluation.get(f"ours_{convention}_total_s")
        if ours is not None:
            # Only the reference convention computes the published loop's statistic; the video
            # convention draws a quarter of the indices for a different statistic: no speed-up.
            same_statistic = convention == "reference"
            rows.append(_comparison(
                "evaluation", f"bootstrap {evaluation.get('n_videos')} videos x {evaluation.get('samples')} resamples, "
                f"{convention} convention (s)", ours, loop if same_statistic else None, "s",
                _speed_ratio(loop, ours) if same_statistic else None, TARGETS["evaluation"] if same_statistic else None,
                None if same_statistic else "not compared (a different statistic)"))
    return rows


# =============================================================================== markdown
def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        magnitude = abs(value)
        return f"{value:.{digits}g}" if magnitude < 1000 else f"{value:,.0f}"
    return str(value)


def _table(header: list[str], body: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in body]
    return lines


def render_markdown(report: dict) -> str:
    machine = report["machine"]
    git = machine.get("git") or {}
    lines = [
        f"# unilvseg benchmarks: {report['device']}, {report['date']} ({report['mode']})",
        "",
        f"- machine: {machine.get('cpu_model')}, {machine.get('cpus_usable')} usable CPUs "
        f"({machine.get('physical_cores')} physical cores), {machine.get('memory_gb')} GB"
        + (f"; GPU {machine['gpu_name']} (bf16 peak {machine.get('gpu_bf16_peak_tflops')} TFLOP/s)" if machine.get("gpu_name") else ""),
        f"- torch {machine.get('torch')}, python {machine.get('python')}; commit {git.get('commit')}"
        + (" (uncommitted changes)" if git.get("dirty") else ""),
        f"- load average (1/5/15 min) at start {report['load_average_start']}, at end {report['load_average_end']}"
        + (" - machine busy, figures are noisy" if report.get("busy") else ""),
        f"- wall time {report['wall_s']:.0f} s; sections {', '.join(report['sections_run'])}; "
        f"training/inference threads {report['threads']}",
        "- every figure: median of the timed repeats after warm-up; the baseline is measured in the same run on the same data",
        "",
        "## Summary",
        "",
    ]
    lines += _table(
        ["section", "benchmark", "ours", "baseline", "unit", "speed-up", "target", "met"],
        [[r["section"], r["benchmark"], r["ours"], r["baseline"], r["unit"],
          None if r["speedup"] is None else (f"{r['speedup']:.1%}" if r["unit"] == "TFLOP/s" else f"{r['speedup']:.2f}x"),
          r["target_text"], r["met"]] for r in report["summary"]],
    )
    sections = report["sections"]
    if "data" in sections:
        data = sections["data"]
        lines += ["", "## Data loading", "",
                  f"{data.get('videos')} videos (mean {data.get('mean_frames_per_video')} frames), clip {data.get('clip_frames')} "
                  f"frames, batch {data.get('batch_size')}, {data.get('samples_per_repeat')} samples x {data.get('repeats')} "
                  f"repeats; cache build {data.get('cache_build_s')} s", ""]
        lines += _table(["mode", "workers", "loader", "samples/s", "runs", "peak RSS MB", "peak RSS MB with workers"],
                        [[r.get("mode"), r.get("workers"), r.get("loader"), r.get("samples_per_s"), r.get("samples_per_s_runs"),
                          r.get("peak_rss_mb"), r.get("peak_rss_with_workers_mb")] for r in data.get("rows", [])])
    if "train" in sections:
        train = sections["train"]
        lines += ["", "## Training step", "",
                  f"{train.get('size')}x{train.get('size')} clips, {train.get('optimizer')}, reference: "
                  f"{json.dumps(train.get('reference_config'))}",
                  f"Measured matmul peak (TFLOP/s, 2048x2048, this device): {json.dumps(train.get('measured_matmul_peak_tflops'))}", ""]
        lines += _table(
            ["encoder", "T", "batch", "config", "precision", "threads", "step s", "runs s", "clips/s", "GFLOP/step",
             "TFLOP/s", "of bf16 peak", "of measured matmul peak", "peak RSS MB", "peak CUDA MB", "load before/after"],
            [[r["encoder"], r["frames"], r["batch"], r["config"], r.get("precision"), r["threads"], r["median_step_s"], r.get("step_s"),
              r.get("clips_per_s"), r["flops_per_step"] / 1e9 if r.get("flops_per_step") else None, r.get("achieved_tflops"),
              f"{r['fraction_of_bf16_peak']:.1%}" if r.get("fraction_of_bf16_peak") is not None else None,
              f"{r['fraction_of_measured_peak']:.1%}" if r.get("fraction_of_measured_peak") is not None else None,
              r.get("peak_rss_mb"), r.get("peak_cuda_mb"), f"{r.get('load_before')}/{r.get('load_after')}"]
             for r in train.get("rows", [])])
        for failure in train.get("errors", []):
            lines.append(f"\n- FAILED {failure['config']}: {failure['error'].splitlines()[-1] if failure['error'] else ''}")
    if "inference" in sections:
        inference = sections["inference"]
        lines += ["", "## Full-video inference", "",
                  f"{inference.get('encoder')}, {inference.get('frames')}-frame windows, videos {inference.get('video_lengths')} "
                  f"frames, device {inference.get('device')} ({inference.get('torch_threads')} threads), "
                  f"{inference.get('repeats')} interleaved passes; ours: batch {inference.get('batch_size')}, published: batch {inference.get('published_batch_size', 1)}, "
                  f"bf16 autocast {'on' if inference.get('bf16_autocast') else 'off'}; on identical windows "
                  f"max |p_ours - p_published| {_fmt(inference.get('max_abs_prob_diff_stride_frames_vs_published'))}, "
                  f"masks agree on {_fmt(inference.get('mask_agreement_stride_frames_vs_published'))} of pixels", ""]
        lines += _table(["method", "windows", "median s", "frames/s", "frames per CPU s", "vs published"],
                        [[name, r.get("windows"), r.get("median_s"), r.get("frames_per_s"), r.get("frames_per_cpu_s"),
                          (inference.get("speedup_vs_published") or {}).get(name)]
                         for name, r in inference.get("results", {}).items()])
    if "evaluation" in sections:
        evaluation = sections["evaluation"]
        lines += ["", "## Bootstrap evaluation", "",
                  f"{evaluation.get('n_videos')} videos x {evaluation.get('samples')} resamples, median of "
                  f"{evaluation.get('repeats')} after 1 warm-up", ""]
        lines += _table(["implementation", "wall s", "CPU s"], [
            ["published loop, overall + ED + ES", evaluation.get("published_loop_total_s"), evaluation.get("published_loop_total_cpu_s")],
            ["ours, reference convention", evaluation.get("ours_reference_total_s"), evaluation.get("ours_reference_total_cpu_s")],
            ["ours, video convention", evaluation.get("ours_video_total_s"), evaluation.get("ours_video_total_cpu_s")],
        ])
    if report["errors"]:
        lines += ["", "## Failed sections", ""]
        lines += [f"- {name}: {error['error']}" for name, error in report["errors"].items()]
    return "\n".join(lines) + "\n"


# =============================================================================== driver
def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(SECTIONS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise UserError(f"--only {text!r}: unknown section(s) {unknown or text!r}; choose from {','.join(SECTIONS)}")
    return [name for name in SECTIONS if name in names]


def result_stem(device: str, date: str, mode: str, sections: list[str]) -> str:
    """``<device>-<date>``, tagged with the mode and the sections when not a full run of all."""
    stem = f"{device}-{date}"
    if mode != "full":
        stem += f"-{mode}"
    if list(sections) != list(SECTIONS):
        stem += "-only-" + "-".join(sections)
    return stem


def run_suite(mode: str = "full", device: str = "cpu", only: list[str] | None = None, out_dir: Path = RESULTS_DIR,
              threads: int = 2) -> tuple[dict, Path, Path]:
    """Run the chosen sections; write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``."""
    from unilvseg.io import write_json, write_text

    if mode not in SETTINGS:
        raise UserError(f"unknown mode {mode!r}; choose from {', '.join(SETTINGS)}")
    if device not in DEVICES:
        raise UserError(f"--device {device!r}: choose from {', '.join(DEVICES)}")
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    sections_run = list(only or SECTIONS)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA device on this machine (use --device cpu)")
    out_dir = Path(out_dir)
    started_at = datetime.datetime.now().astimezone()
    started = time.perf_counter()
    load_start = common.load_average()
    machine = common.machine_info(device)
    sections, errors, seconds = {}, {}, {}
    for name in sections_run:
        _log(f"{name}: starting ({mode}, {device})")
        section_started = time.perf_counter()
        try:
            sections[name] = RUNNERS[name](SETTINGS[mode][name], device, threads)
        except Exception as error:  # one broken benchmark must not cost the others' figures
            errors[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
            _log(f"{name}: FAILED: {type(error).__name__}: {error}")
        seconds[name] = round(time.perf_counter() - section_started, 1)
        _log(f"{name}: done in {seconds[name]} s")
    if "train" in sections and sections["train"]["errors"] and not sections["train"]["rows"]:
        errors["train"] = {"error": "every training configuration failed", "traceback": json.dumps(sections["train"]["errors"])}
    load_end = common.load_average()
    report = {
        "suite": "unilvseg-benchmarks",
        "mode": mode,
        "device": device,
        "date": started_at.strftime("%Y-%m-%d"),
        "started": started_at.isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - started, 1),
        "section_seconds": seconds,
        "sections_run": sections_run,
        "threads": threads,
        "machine": machine,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "busy": bool(load_start and max(load_start[0], load_end[0] if load_end else 0) > 0.75 * machine["cpus_usable"]),
        "settings": {name: SETTINGS[mode][name] for name in sections_run},
        "targets": {**TARGETS, "gpu_bf16_peak_fraction": GPU_PEAK_FRACTION_TARGET},
        "summary": summarise(sections),
        "sections": sections,
        "errors": errors,
    }
    stem = result_stem(device, report["date"], mode, sections_run)
    json_path = write_json(report, out_dir / f"{stem}.json")
    md_path = write_text(render_markdown(report), out_dir / f"{stem}.md")
    return report, Path(json_path), Path(md_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer videos and repeats, T=16 on CPU (< 10 min on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="seconds: tiny networks, 2 videos, 1 repeat (tests the harness)")
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--only", default=None, help=f"comma-separated sections ({','.join(SECTIONS)}); default all")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for our training steps and inference (default 2; 1 with --smoke)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default benchmarks/results)")
    parser.add_argument("--train-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_child is not None:
        print(json.dumps(train_child(json.loads(args.train_child))))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    try:
        threads = args.threads if args.threads is not None else 1 if args.smoke else 2
        report, json_path, md_path = run_suite(mode, args.device, parse_only(args.only), args.out, threads)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(render_markdown(report))
    print(f"wrote {json_path}\nwrote {md_path}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
