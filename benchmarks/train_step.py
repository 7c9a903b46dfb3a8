"""Time one training step (forward + backward + Adam step) of a network on CPU.

    python -m benchmarks.train_step --encoder 3d_unet --frames 32 --batch 1 --repeats 5 --threads 2

Prints one JSON line: median wall and CPU seconds per step, minor page faults per step, peak
RSS, and the 1-minute load average before/after (timings taken with load >= 1.5 on a shared
machine are flagged ``"quiet": false`` and should not be compared). ``--fast on/off``
(UNILVSEG_FAST_CPU=1/0) forces the 3D U-Net CPU allocator tuning; ``auto`` keeps the default.
``--precision bf16`` runs the forward pass under bf16 autocast (as ``--precision bf16-mixed``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="3d_unet")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=112, help="clip height = width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--width", type=int, default=None, help="base channel override")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (oneDNN primitive creation, first heap growth)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fast", choices=["auto", "on", "off"], default="auto", help="3D U-Net CPU fast path")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="bf16 = bf16 autocast (train_weak.py --precision bf16-mixed); auto = what --precision auto picks (float32 on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.batch < 1 or args.warmup < 0:
        print("error: --threads, --repeats and --batch must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    # Thread pools are sized when torch loads, so set the environment first.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    if args.fast != "auto":
        os.environ["UNILVSEG_FAST_CPU"] = "1" if args.fast == "on" else "0"
    import resource

    import psutil
    import torch
    import torch.nn.functional as F

    from unilvseg.errors import UserError
    from unilvseg.models import build_network, check_input_shape
    from unilvseg.models.unet3d import fast_cpu_enabled

    torch.set_num_threads(args.threads)
    try:
        check_input_shape(args.encoder, args.size, args.size, args.frames)
        torch.manual_seed(args.seed)
        network = build_network(args.encoder, frames=args.frames, width=args.width)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    clip = torch.randn(args.batch, 3, args.size, args.size, args.frames)
    target = (torch.rand(args.batch, 1, args.size, args.size, args.frames) > 0.5).float()

    from unilvseg.hardware import default_precision

    bf16 = args.precision == "bf16" or (args.precision == "auto" and default_precision("cpu") == "bf16-mixed")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        # As Lightning's bf16-mixed: autocast around the forward pass, the loss in float32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = network(clip)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        loss.backward()
        optimizer.step()

    load_before = os.getloadavg()[0]
    for _ in range(args.warmup):
        step()
    wall, cpu, faults = [], [], []
    for _ in range(args.repeats):
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    load_after = os.getloadavg()[0]
    fast = getattr(network, "use_fast_cpu", None)
    record = {
        "encoder": args.encoder,
        "frames": args.frames,
        "size": args.size,
        "batch": args.batch,
        "width": args.width,
        "threads": args.threads,
        "parameters": sum(p.numel() for p in network.parameters()),
        "fast_cpu": bool(fast(clip)) if fast else None,
        "fast_cpu_env": fast_cpu_enabled(),
        "precision": "bf16" if bf16 else "fp32",
        "repeats": args.repeats,
        "median_step_s": round(statistics.median(wall), 3),
        "median_cpu_s": round(statistics.median(cpu), 3),
        "step_s": [round(t, 3) for t in wall],
        "minor_faults_per_step": int(statistics.median(faults)),
        # ru_maxrss is KiB on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
        "quiet": max(load_before, load_after) < 1.5,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
