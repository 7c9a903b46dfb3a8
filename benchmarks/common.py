"""Shared pieces of the benchmark suite: timing, memory, FLOPs and a description of the machine.

Every figure the suite reports is the median of several timed repeats after untimed warm-up
calls (first calls pay for imports, allocator growth, oneDNN/cuDNN plan creation, compilation).
Wall time is the headline; process CPU time is kept next to it because on a shared machine wall
time also counts the time other programs hold the cores.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]

#: Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, no sparsity), matched in order
#: against ``torch.cuda.get_device_name``: more specific names first ("H100 PCIe" before "H100",
#: "A100" before "A10", "L40S" before "L4").
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIE", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
)


@dataclass
class Timing:
    """Seconds per call: medians and every timed run (wall and this process's CPU time)."""

    median_s: float
    median_cpu_s: float
    runs_s: list[float] = field(default_factory=list)
    cpu_runs_s: list[float] = field(default_factory=list)
    warmup: int = 0

    def as_dict(self, digits: int = 4) -> dict:
        out = asdict(self)
        for key in ("median_s", "median_cpu_s"):
            out[key] = round(out[key], digits)
        for key in ("runs_s", "cpu_runs_s"):
            out[key] = [round(v, digits) for v in out[key]]
        return out


def time_repeats(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, synchronize: Callable[[], None] | None = None
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; medians of the timed runs.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called before each clock read so
    asynchronous device work is counted in the call that queued it.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return Timing(statistics.median(wall), statistics.median(cpu), wall, cpu, warmup)


# ---------------------------------------------------------------------------------- memory
def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children) in MiB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    # ru_maxrss is KiB on Linux, bytes on macOS.
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class TreeRssSampler:
    """Samples the RSS of a process and all its descendants every ``interval`` seconds in a thread;
    ``peak_mb`` (the process alone) and ``peak_tree_mb`` (with children, e.g. DataLoader workers)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak_mb = 0.0
        self.peak_tree_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            process = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            try:
                main = process.memory_info().rss
                tree = main
                for child in process.children(recursive=True):
                    try:
                        tree += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                return
            self.peak_mb = max(self.peak_mb, main / 2**20)
            self.peak_tree_mb = max(self.peak_tree_mb, tree / 2**20)
            time.sleep(self.interval)

    def __enter__(self) -> "TreeRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def run_json_subprocess(args: Sequence[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python <args>`` in a fresh interpreter (cwd = repository root) and parse the last
    line of its stdout as JSON; adds ``peak_rss_sampled_mb`` (sampled from outside, with children).

    A fresh process per configuration keeps peak memory, thread pools and allocator state of one
    configuration from leaking into the next.
    """
    command = [sys.executable, *args]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with TreeRssSampler(process.pid) as sampler:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise RuntimeError(f"{' '.join(command)} ran past {timeout} s:\n{stderr[-2000:]}") from None
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode}):\n{stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["peak_rss_sampled_mb"] = round(sampler.peak_tree_mb, 1)
    return result


def single_thread_env(threads: int = 1, **extra: str) -> dict:
    """A copy of the environment with the BLAS/OpenMP thread pools sized to ``threads``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **extra)
    # The children import benchmarks/ and unilvseg from the repository even if not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


# ---------------------------------------------------------------------------------- CUDA
def cuda_synchronizer(device) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` bound to ``device`` when it is a CUDA device, else None."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)


def reset_cuda_peak(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cuda_max_memory_mb(device) -> float | None:
    """Peak memory allocated by tensors on ``device`` since the last reset (None off CUDA)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def bf16_peak_tflops(device_name: str | None) -> float | None:
    """Dense bf16 peak of a GPU from its name (see ``BF16_PEAK_TFLOPS``); None when unknown."""
    if not device_name:
        return None
    name = device_name.upper()
    for key, peak in BF16_PEAK_TFLOPS:
        if key in name:
            return peak
    return None


def matmul_peak_tflops(device: str = "cpu", dtype: str = "float32", size: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """What this machine does at best, measured: TFLOP/s of a large square matrix product
    (``size``³ multiply-adds, median of ``repeats`` after a warm-up) in ``dtype`` (float32 or
    bfloat16) on ``device``. Dense matmul is the best case for the BLAS/oneDNN/cuBLAS kernels
    the convolutions also use, so a train step's share of it says how close the step runs to
    the machine's limit (not to a datasheet number)."""
    import statistics

    import torch

    if threads:
        torch.set_num_threads(int(threads))
    kind = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    a = torch.randn(size, size, device=device).to(kind)
    b = torch.randn(size, size, device=device).to(kind)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    (a @ b).sum().item()  # warm-up: kernel selection, page faults
    seconds = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        a @ b
        sync()
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds) / 1e12


# ---------------------------------------------------------------------------------- FLOPs
def train_step_flops(encoder: str, frames: int, size: int = 112, batch: int = 1, width: int | None = None) -> int:
    """FLOPs of one forward + backward of ``encoder`` on a ``(batch, 3, size, size, frames)`` clip
    (torch.utils.flop_counter: convolutions and matrix products, multiply-add = 2 FLOPs).

    Counted on the meta device: shapes only, no memory and no arithmetic, so it costs about a
    second even for the full 3D U-Net. The optimiser's element-wise update is not counted.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from unilvseg.models import build_network

    with torch.device("meta"):
        network = build_network(encoder, frames=frames, width=width)
        clip = torch.randn(batch, 3, size, size, frames)
        target = torch.rand(batch, 1, size, size, frames)
    with FlopCounterMode(display=False) as counter:
        F.binary_cross_entropy_with_logits(network(clip), target).backward()
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------- machine
def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def physical_cores() -> int:
    """What torch sizes its intra-op pool to by default (physical cores)."""
    import psutil

    return min(psutil.cpu_count(logical=False) or usable_cpus(), usable_cpus())


def git_commit(repo: Path = ROOT) -> dict:
    """The checked-out commit and whether tracked code differs from it (None outside git).

    ``benchmarks/results`` is left out: a benchmark writes its own result files before it names
    the commit, and a result file is not code the figure depends on."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def commit_note(repo: Path = ROOT) -> str:
    """``commit <sha>`` for a result file's header, flagging uncommitted code changes."""
    commit = git_commit(repo)
    if commit["commit"] is None:
        return "commit unknown (not a git checkout)"
    return f"commit {commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else "")


def machine_info(device: str = "cpu") -> dict:
    """CPU model and cores, memory, torch/python versions, GPU name and peak, git commit."""
    import psutil
    import torch

    info = {
        "cpu_model": cpu_model(),
        "cpus_usable": usable_cpus(),
        "cpus_logical": os.cpu_count(),
        "physical_cores": physical_cores(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "git": git_commit(),
        "device": device,
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        pass
    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        info.update(
            gpu_name=name,
            gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_bf16_peak_tflops=bf16_peak_tflops(name),
        )
    return info


def portable_path(path) -> str:
    """A path as it may stand in a committed result: relative to the repository when inside it,
    beside it as ``../`` (``../shared/data``), with the home folder as ``~`` and the temporary
    folder as ``$TMPDIR`` otherwise (results must not name this machine's folders)."""
    import tempfile

    resolved = Path(path).expanduser().resolve()
    bases = ((ROOT, None), (Path.home().resolve(), "~"), (Path(tempfile.gettempdir()).resolve(), "$TMPDIR"), (ROOT.parent, ".."))
    for base, shown in bases:
        try:
            relative = resolved.relative_to(base)
        except ValueError:
            continue
        return str(relative) if shown is None else str(Path(shown) / relative)
    return str(path)


def portable_command(module: str, argv: list[str]) -> str:
    """``python -m <module> <argv>`` with every absolute path argument made portable (portable_path)."""
    import os

    shown = [portable_path(a) if os.path.isabs(a) else a for a in argv]
    return " ".join(["python -m", module, *shown])
