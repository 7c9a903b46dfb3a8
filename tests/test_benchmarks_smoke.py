"""The benchmark suite (benchmarks/run.py, benchmarks/common.py): the whole suite end to end at
``--smoke`` size (figures not asserted, only that every section ran and the report is complete),
and the pieces whose logic decides what the report says (targets, speed-ups, FLOPs, GPU peaks)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import common, run  # noqa: E402
from unilvseg.errors import UserError  # noqa: E402

SUMMARY_KEYS = {"section", "benchmark", "ours", "baseline", "unit", "speedup", "target", "target_text", "met"}


def test_smoke_suite_writes_complete_json_and_markdown(tmp_path):
    status = run.main(["--smoke", "--out", str(tmp_path)])
    assert status == 0
    date = datetime.date.today().isoformat()
    json_path, md_path = tmp_path / f"cpu-{date}-smoke.json", tmp_path / f"cpu-{date}-smoke.md"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([json_path.name, md_path.name])  # no temporaries

    report = json.loads(json_path.read_text())
    assert report["errors"] == {}
    assert report["mode"] == "smoke" and report["device"] == "cpu" and report["threads"] == 1
    assert set(report["sections"]) == set(run.SECTIONS) == set(report["section_seconds"])
    machine = report["machine"]
    for key in ("cpu_model", "cpus_usable", "torch", "git", "memory_gb"):
        assert machine[key] not in (None, ""), key
    assert len(report["load_average_start"]) == 3 and len(report["load_average_end"]) == 3

    data = report["sections"]["data"]
    assert {(r["loader"], r["mode"], r["workers"]) for r in data["rows"]} == {
        ("published", "weak", 0), ("ours", "weak", 0), ("ours_uint8", "weak", 0)}
    assert all(r["cpu_s_per_sample"] > 0 for r in data["rows"])
    assert all(r["samples_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in data["rows"])

    train = report["sections"]["train"]
    assert train["errors"] == []
    from unilvseg.hardware import cpu_has_native_bf16

    assert [r["config"] for r in train["rows"]] == ["reference", "ours"] + (["ours_bf16"] if cpu_has_native_bf16() else [])
    assert [r["precision"] for r in train["rows"]][:2] == ["fp32", "fp32"]
    for row in train["rows"]:
        assert row["encoder"] == "3d_unet_tiny" and row["median_step_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["flops_per_step"] > 0 and row["achieved_tflops"] > 0
        # The step's share of what a large matmul reaches on this machine, in its own precision.
        peak = train["measured_matmul_peak_tflops"]["bfloat16" if row["config"] == "ours_bf16" else "float32"]
        assert row["fraction_of_measured_peak"] == pytest.approx(row["achieved_tflops"] / peak, abs=1e-3)
    assert train["measured_matmul_peak_tflops"]["float32"] > 0
    assert train["rows"][0]["details"]["fast_cpu_env"] is False  # the reference forces the CPU fast path off
    assert train["rows"][0]["threads"] == 1 == train["rows"][1]["threads"]  # smoke: reference_threads=1, --threads 1

    assert set(report["sections"]["inference"]["results"]) >= {"published", "ours_overlap"}
    assert report["sections"]["evaluation"]["samples"] == 20

    summary = report["summary"]
    assert all(set(row) == SUMMARY_KEYS for row in summary)
    assert {row["section"] for row in summary} == set(run.SECTIONS)
    compared = [row for row in summary if "not compared" not in row["target_text"]]
    assert all(isinstance(row["met"], bool) and row["speedup"] > 0 for row in compared)
    # The video-convention bootstrap computes another statistic than the published loop: no ratio.
    assert [row["benchmark"].split(", ")[-1] for row in summary if row not in compared] == ["video convention (s)"]

    markdown = md_path.read_text()
    assert "| section | benchmark | ours | baseline | unit | speed-up | target | met |" in markdown
    for heading in ("## Data loading", "## Training step", "## Full-video inference", "## Bootstrap evaluation"):
        assert heading in markdown
    # One summary row per non-reference configuration of the main network.
    assert markdown.count("\n| train |") == len(train["rows"]) - 1 and ">= 1.5x" in markdown and ">= 50x" in markdown


def test_train_child_runs_the_gpu_variant_switches(tmp_path):
    """The CUDA child's bf16-autocast + channels_last_3d path, exercised on CPU."""
    spec = dict(device="cpu", encoder="3d_unet_tiny", frames=16, size=32, batch=2, threads=1, repeats=2, warmup=1,
                **run.CUDA_VARIANTS["bf16_channels_last"])
    saved = torch.get_num_threads()
    try:
        result = run.train_child(spec)
    finally:
        torch.set_num_threads(saved)
    assert len(result["runs_s"]) == 2 and result["median_s"] > 0 and result["warmup"] == 1
    assert result["peak_cuda_mb"] is None and result["parameters"] > 0


def test_train_step_flops_scale_with_clip_and_batch():
    one = common.train_step_flops("3d_unet_tiny", frames=16, size=32, batch=1)
    assert one > 0
    assert common.train_step_flops("3d_unet_tiny", frames=32, size=32, batch=1) == 2 * one
    assert common.train_step_flops("3d_unet_tiny", frames=16, size=32, batch=2) == 2 * one


def test_summary_speedups_targets_and_gpu_fraction():
    sections = {
        "data": {"rows": [
            {"loader": "published", "mode": "weak", "workers": 0, "samples_per_s": 2.0},
            {"loader": "ours", "mode": "weak", "workers": 0, "samples_per_s": 30.0},
            {"loader": "published", "mode": "ssl", "workers": 2, "samples_per_s": 10.0},
            {"loader": "ours", "mode": "ssl", "workers": 2, "samples_per_s": 50.0},
        ]},
        "train": {
            "main": ["3d_unet", 32], "reference_config": {"config": "fp32"}, "gpu_bf16_peak_tflops": 1000.0,
            "rows": [
                {"encoder": "3d_unet", "frames": 32, "batch": 1, "config": "fp32", "device": "cuda", "clips_per_s": 10.0},
                {"encoder": "3d_unet", "frames": 32, "batch": 1, "config": "bf16", "device": "cuda", "clips_per_s": 20.0,
                 "achieved_tflops": 350.0, "fraction_of_bf16_peak": 0.35},
                {"encoder": "3d_unet", "frames": 32, "batch": 8, "config": "fp32_batch8", "device": "cuda", "clips_per_s": 8.0},
                {"encoder": "3d_unet", "frames": 32, "batch": 8, "config": "bf16_batch8", "device": "cuda",
                 "clips_per_s": 12.0, "achieved_tflops": 200.0, "fraction_of_bf16_peak": 0.2},
                {"encoder": "resnet18", "frames": 16, "batch": 1, "config": "bf16", "device": "cuda", "clips_per_s": 5.0,
                 "fraction_of_bf16_peak": 0.01},  # no fp32 row for it: no comparison, not the main network
            ],
        },
        "inference": {"encoder": "3d_unet", "results": {"published": {"frames_per_s": 10.0},
                                                        "ours_overlap": {"frames_per_s": 25.0}}},
        "evaluation": {"n_videos": 1276, "samples": 10000, "published_loop_total_s": 30.0,
                       "ours_reference_total_s": 0.5, "ours_video_total_s": 1.0},
    }
    rows = {(r["section"], r["benchmark"]): r for r in run.summarise(sections)}
    weak = rows[("data", "weak samples/s, 0 workers")]
    assert weak["speedup"] == pytest.approx(15.0) and weak["met"] is True
    assert rows[("data", "ssl samples/s, 2 workers")]["met"] is False  # 5x < 10x
    bf16 = rows[("train", "3d_unet T=32 bf16 clips/s")]
    assert bf16["speedup"] == pytest.approx(2.0) and bf16["met"] is True
    # Against the fp32 baseline at the same batch (8 clips/s), not the batch-1 one (10 clips/s).
    assert rows[("train", "3d_unet T=32 bf16_batch8 clips/s")]["speedup"] == pytest.approx(1.5)
    assert ("train", "3d_unet T=32 fp32_batch8 clips/s") not in rows  # a baseline is not compared with itself
    assert rows[("train", "3d_unet T=32 bf16 TFLOP/s of bf16 peak")]["met"] is True  # 35% >= 30%
    assert rows[("train", "3d_unet T=32 bf16_batch8 TFLOP/s of bf16 peak")]["met"] is False
    assert not any(key[1].startswith("resnet18") for key in rows)
    assert rows[("inference", "3d_unet ours_overlap frames/s")]["met"] is False  # 2.5x < 3x
    timed = rows[("evaluation", "bootstrap 1276 videos x 10000 resamples, reference convention (s)")]
    assert timed["speedup"] == pytest.approx(60.0) and timed["met"] is True  # time: baseline / ours
    video = rows[("evaluation", "bootstrap 1276 videos x 10000 resamples, video convention (s)")]
    assert video["speedup"] is None and video["met"] is None and video["baseline"] is None


def test_summary_tolerates_missing_baselines():
    sections = {"inference": {"encoder": "x", "results": {"ours_overlap": {"frames_per_s": 3.0}}}, "data": {"rows": []}}
    (row,) = run.summarise(sections)
    assert row["speedup"] is None and row["met"] is None
    assert "| inference | x ours_overlap frames/s | 3 | - |" in "\n".join(run._table(
        ["section", "benchmark", "ours", "baseline"], [[row["section"], row["benchmark"], row["ours"], row["baseline"]]]))


def test_time_repeats_counts_warmup_and_takes_the_median():
    calls, syncs = [], []
    timing = common.time_repeats(lambda: calls.append(1), repeats=3, warmup=2, synchronize=lambda: syncs.append(1))
    assert len(calls) == 5 and len(timing.runs_s) == 3 and timing.warmup == 2
    assert len(syncs) == 4  # once after warm-up, once per timed run
    assert timing.median_s == sorted(timing.runs_s)[1]
    with pytest.raises(ValueError):
        common.time_repeats(lambda: None, repeats=0)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A10", 125.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
    ("Tesla V100-SXM2-16GB", None), (None, None),
])
def test_bf16_peak_by_device_name(name, peak):
    assert common.bf16_peak_tflops(name) == peak


def test_sections_flag_and_result_names(capsys):
    assert run.parse_only(None) == list(run.SECTIONS)
    assert run.parse_only("train, data") == ["data", "train"]  # suite order
    with pytest.raises(UserError, match="--only"):
        run.parse_only("data,bogus")
    assert run.main(["--only", "bogus", "--smoke"]) == 2
    assert "error: --only" in capsys.readouterr().err
    assert run.result_stem("cpu", "2025-01-02", "full", list(run.SECTIONS)) == "cpu-2025-01-02"
    assert run.result_stem("cuda", "2025-01-02", "quick", ["train"]) == "cuda-2025-01-02-quick-only-train"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU is present")
def test_cuda_without_gpu_is_a_usage_error(tmp_path, capsys):
    assert run.main(["--smoke", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_published_inference_baseline_batches_windows_without_changing_them():
    """On a GPU the published baseline runs 16 windows per forward pass, as the published script
    does; batching must not change its output (checked here on CPU, batch 16 vs 1)."""
    import importlib.util

    import numpy as np
    import torch

    from unilvseg.models import build_network

    spec = importlib.util.spec_from_file_location("inference_bench", Path(run.__file__).with_name("inference_bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.published_batch_size(torch.device("cuda")) == 16 and bench.published_batch_size(torch.device("cpu")) == 1
    torch.manual_seed(0)
    network = build_network("3d_unet_tiny", frames=16).eval()
    video = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    args = (network, video, 16, (0.1, 0.1, 0.1), (0.2, 0.2, 0.2), torch.device("cpu"))
    one, sixteen = bench.published_predict(*args, batch_size=1), bench.published_predict(*args, batch_size=16)
    assert one.shape == sixteen.shape == (40, 32, 32)
    np.testing.assert_allclose(one, sixteen, atol=1e-5)


def test_git_commit_dirty_counts_code_not_result_files(tmp_path):
    """A benchmark writes its result files before it names the commit; those writes must not
    mark the commit dirty, while a changed source file must."""
    import shutil
    import subprocess

    from benchmarks.common import commit_note, git_commit

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "benchmarks" / "results" / "table.md").write_text("old\n")

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    assert git_commit(repo)["dirty"] is False
    (repo / "benchmarks" / "results" / "table.md").write_text("new figures\n")
    assert git_commit(repo)["dirty"] is False
    sha = git_commit(repo)["commit"]
    assert commit_note(repo) == f"commit {sha}"
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo)["dirty"] is True
    assert commit_note(repo) == f"commit {sha} (with uncommitted changes)"
    assert commit_note(tmp_path / "elsewhere").startswith("commit unknown")
