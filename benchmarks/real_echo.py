"""Real-echo benchmark: every training scheme trained and scored on an EchoNet-Dynamic folder.

    python -m benchmarks.real_echo                        # ../shared/data/echonet-real, CPU defaults
    python -m benchmarks.real_echo --scale 10 --encoder 3d_unet --size 112 112 --frames 32   # a GPU
    python -m benchmarks.real_echo --smoke                # tiny settings on a 12-video subset (CI)

Schemes (each trained with the project's own scripts, called through their ``main()``):

* ``a_labelfree``: ``train_labelfree.py`` on every TRAIN video (no tracing, no EF);
* ``b_ssl_finetune``: ``train_ssl.py`` (temporal masking) on all videos of the folder, TRAIN plus
  the VAL/TEST videos as unlabelled ``--external_dir`` videos (their labels are never read),
  then ``train_weak.py --checkpoint`` on the traced TRAIN videos;
  ``b_scratch``: the same weak training from a random initialisation;
* ``c_anatomical_finetune``: ``train_ssl.py --pretext anatomical_position``, then the same weak training;
* ``d_tracings_pseudo``: ``train_weak.py --labels tracings+pseudo --pseudo_labels`` with the label
  round the label-free run's final model was trained on (``labels/round<last>``): tracings where
  they exist, QC-passed pseudo-labels on every other frame and video, in one run;
* ``e_phantom``: ``train_weak.py`` on the built-in phantom only (the floor).

Every weak run trains a fixed budget and keeps its last checkpoint (no selection on the VAL
video), so the VAL and TEST videos' human tracings are never used before scoring. Each scheme
is scored with ``predict.py --split all`` and ``evaluate_bootstrap.py`` (TEST, VAL): Dice at
the human-traced frames with 95 % bootstrap intervals, for TEST (3 videos) and VAL+TEST pooled
(4 videos); EF from the predicted masks against FileList's EF on every predicted video.

Outputs: ``<results_dir>/real_echo.{md,csv}``, ``real_echo_ef.csv`` (per video),
``real_echo_labelfree_stages.csv``, ``real_echo_ef_bland_altman.png``, ``real_echo_ef_scatter.png``;
every run in ``--run_dir`` (default ``runs/real_echo``) with each scheme's final checkpoint
copied to ``<run_dir>/checkpoints/<scheme>.ckpt`` (score any EchoNet folder with predict.py and
evaluate_bootstrap.py). Running again with the same ``--run_dir`` reuses every finished stage.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import load_average, portable_command
from unilvseg.errors import UserError

log = logging.getLogger("unilvseg")

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "echonet-real"
SCHEMES = ("a_labelfree", "b_ssl_finetune", "b_scratch", "c_anatomical_finetune", "d_tracings_pseudo", "e_phantom")
LABELS = {
    "a_labelfree": "a. label-free (no tracing)",
    "b_ssl_finetune": "b. temporal-masking SSL + weak fine-tuning",
    "b_scratch": "b'. weak training from scratch",
    "c_anatomical_finetune": "c. anatomical-position SSL + weak fine-tuning",
    "d_tracings_pseudo": "d. tracings + QC'd pseudo-labels, one run",
    "e_phantom": "e. phantom only (floor)",
}
# Run folders (under --run_dir) whose training time a scheme's "train s" adds up.
TRAIN_FOLDERS = {
    "a_labelfree": ["a_labelfree"],
    "b_ssl_finetune": ["ssl_temporal_masking", "b_ssl_finetune"],
    "b_scratch": ["b_scratch"],
    "c_anatomical_finetune": ["ssl_anatomical_position", "c_anatomical_finetune"],
    "d_tracings_pseudo": ["d_tracings_pseudo"],
    "e_phantom": ["e_phantom"],
}
SMOKE_UNTRACED = 5  # untraced TRAIN videos in the --smoke subset (plus every traced video)
# Schemes whose training reads the tracings of the videos that have dense ReferenceMasks (the
# traced TRAIN videos' tracings were drawn from those masks): their dense figures would be scored
# on what they were trained on, so only the other schemes get them.
TRAINS_ON_DENSE_REFERENCES = {"b_ssl_finetune", "b_scratch", "c_anatomical_finetune", "d_tracings_pseudo"}


@dataclass(frozen=True)
class Budget:
    """Everything that sets how long the benchmark trains (``--scale`` multiplies the epochs/steps)."""

    encoder: str = "3d_unet_tiny"
    width: int | None = None
    frames: int = 16
    size: tuple[int, int] = (64, 64)
    batch_size: int = 4
    lr: float = 1e-3
    # Defaults from CPU seconds measured on the 232-video folder (3d_unet_tiny, 64x64, 16 frames,
    # 1 torch thread): label-free stage-1 labels ~80 s, each network label round ~125 s, one
    # epoch over the 228 TRAIN videos ~24 s (label-free, d) / ~18-21 s (SSL), a weak step on the
    # 3 traced videos ~0.13 s, predict.py on all 232 videos ~75 s. With 36 early and pseudo
    # epochs, one seed of every scheme used 8,126 CPU s at 2 torch threads (2026-12-06,
    # real_echo.md and real_echo_other/real_echo.md); 1 thread per process needs about half.
    labelfree_rounds: int = 1
    # 36, not the earlier 12: the early network learns a clip's average shape first and the
    # per-frame (end-systolic) boundary late; at 6 / 18 / 36 epochs its median ES/ED area was
    # 0.70 / 0.65 / 0.64 (last checkpoints) where the labels have 0.55
    # (benchmarks/results/real_echo_ablation.md). Each stage hands on its last checkpoint.
    labelfree_early_epochs: int = 36
    labelfree_round_epochs: int = 6
    labelfree_train_videos: int | None = None
    ssl_epochs: int = 6
    anatomical_epochs: int = 6
    finetune_steps: int = 400  # weak training on the traced TRAIN videos (b, b', c)
    pseudo_epochs: int = 36  # scheme d, one clip per TRAIN video per epoch (as label-free's early stage)
    phantom_epochs: int = 30  # scheme e, 40-video phantom
    limit_batches: int | None = None  # smoke only: batches per epoch
    # Windows of one clip length without overlap (None: predict.py's default, frames // 2). The
    # EF sweep predicts all 232 videos for each of 6 schemes; with overlapping windows that took
    # ~14 min a scheme on the 2 cores (first default run), twice the forward passes for a small
    # smoothing of window seams. Clamped to --frames.
    predict_stride: int | None = 16
    predict_batch: int = 8  # windows per forward pass: 8 measured ~2x faster per window than 1 for 3d_unet_tiny at 64x64 on CPU
    samples: int = 10_000

    def scaled(self, scale: float) -> "Budget":
        grow = lambda value: max(1, int(math.ceil(value * scale)))  # noqa: E731
        return replace(
            self,
            labelfree_early_epochs=grow(self.labelfree_early_epochs),
            labelfree_round_epochs=grow(self.labelfree_round_epochs),
            ssl_epochs=grow(self.ssl_epochs),
            anatomical_epochs=grow(self.anatomical_epochs),
            finetune_steps=grow(self.finetune_steps),
            pseudo_epochs=grow(self.pseudo_epochs),
            phantom_epochs=grow(self.phantom_epochs),
        )


SMOKE = Budget(
    labelfree_rounds=0, labelfree_early_epochs=1, labelfree_round_epochs=1, ssl_epochs=1, anatomical_epochs=1,
    finetune_steps=2, pseudo_epochs=1, phantom_epochs=1, limit_batches=2, predict_stride=16, samples=200,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_echo",
        description="Train every scheme (label-free, SSL + weak, tracings + pseudo-labels, phantom) on an EchoNet folder "
        "and score Dice at the human-traced VAL/TEST frames and EF on every video.",
    )
    parser.add_argument("--data_path", default=str(DEFAULT_DATA), help=f"EchoNet-Dynamic folder (default {DEFAULT_DATA})")
    parser.add_argument("--run_dir", default=None, help="run folder (default runs/real_echo, or runs/real_echo-smoke with --smoke)")
    parser.add_argument("--results_dir", default=None,
                        help=f"where real_echo.md/.csv and plots go (default {RESULTS_DIR}; with --smoke <run_dir>/results)")
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every epoch/step count (e.g. 10 on a GPU)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny settings on a subset (every traced video + {SMOKE_UNTRACED} untraced): checks the pipeline, ~2 min")
    parser.add_argument("--encoder", default=None, help="network of every scheme (default 3d_unet_tiny)")
    parser.add_argument("--width", type=int, default=None, help="base channel width override")
    parser.add_argument("--frames", type=int, default=None, help="clip length (default 16)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="network input size (default 64 64)")
    parser.add_argument("--batch_size", type=int, default=None, help="training batch size (default 4)")
    parser.add_argument("--samples", type=int, default=None, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of a one-seed run (see --seeds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="train and score every scheme once per seed (run folders <run_dir>/seed<k>); the report adds mean ± sd "
                        "over seeds, intervals over seeds and videos, paired differences to b' and the dense every-frame figures")
    parser.add_argument("--device", default="auto", help="predict.py --device (auto: CUDA when available)")
    return parser


def budget_from_args(args) -> Budget:
    if not args.scale > 0:
        raise UserError(f"--scale must be > 0, got {args.scale}")
    budget = (SMOKE if args.smoke else Budget()).scaled(args.scale)
    changes = {name: getattr(args, name) for name in ("encoder", "width", "frames", "batch_size", "samples") if getattr(args, name) is not None}
    if args.size is not None:
        changes["size"] = tuple(args.size)
    budget = replace(budget, **changes)
    if budget.predict_stride is not None and budget.predict_stride > budget.frames:
        budget = replace(budget, predict_stride=budget.frames)
    return budget


# -- data ---------------------------------------------------------------------------------------


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        target.symlink_to(source.resolve())
    except OSError:  # filesystems without symlinks
        shutil.copyfile(source, target)


def smoke_subset(data_path: Path, folder: Path, untraced: int = SMOKE_UNTRACED) -> Path:
    """An EchoNet folder of every traced video plus the first ``untraced`` untraced TRAIN videos
    (videos and reference masks linked, CSV rows filtered), for the smoke run."""
    from unilvseg.io import write_csv

    filelist = pd.read_csv(data_path / "FileList.csv", dtype={"FileName": str})
    tracings = pd.read_csv(data_path / "VolumeTracings.csv", dtype={"FileName": str})
    traced = set(tracings["FileName"].str.replace(r"\.avi$", "", regex=True))
    names = filelist["FileName"].str.replace(r"\.avi$", "", regex=True)
    plain = filelist[~names.isin(traced) & (filelist["Split"].str.upper() == "TRAIN")].head(untraced)
    kept = pd.concat([filelist[names.isin(traced)], plain])
    write_csv(kept, folder / "FileList.csv")
    write_csv(tracings, folder / "VolumeTracings.csv")
    for name in kept["FileName"].str.replace(r"\.avi$", "", regex=True):
        _link(data_path / "Videos" / f"{name}.avi", folder / "Videos" / f"{name}.avi")
        reference = data_path / "ReferenceMasks" / f"{name}.npz"
        if reference.is_file():
            _link(reference, folder / "ReferenceMasks" / f"{name}.npz")
    return folder


def heldout_videos(index, folder: Path) -> Path:
    """A plain folder linking the VAL/TEST videos, for self-supervision on every video (pixels only)."""
    for record in index.records:
        if record.split in ("val", "test"):
            _link(record.path, folder / record.path.name)
    return folder


# -- stages -------------------------------------------------------------------------------------


CPU_SECONDS: dict[str, float] = {}  # stage folder -> CPU seconds of this process while it ran


def run_stage(folder: Path, settings: dict, action, product: str) -> tuple[Path, float]:
    """low_label.run_stage (reuse a finished stage, else run it), also recording the stage's CPU
    seconds (``cpu.json``): every stage runs in this process (no DataLoader workers), so CPU time
    measures the work even when other programs share the cores and stretch the wall time."""
    from benchmarks.low_label import run_stage as reuse_or_run
    from unilvseg.io import write_json

    marker = folder / "cpu.json"
    cpu_started = time.process_time()
    ran = []
    target, seconds = reuse_or_run(folder, settings, lambda: ran.append(1) or action(), product)
    if ran:
        write_json({"cpu_seconds": round(time.process_time() - cpu_started, 1)}, marker)
    try:
        CPU_SECONDS[str(folder)] = float(json.loads(marker.read_text())["cpu_seconds"])
    except (OSError, ValueError, KeyError):
        CPU_SECONDS[str(folder)] = float("nan")
    return target, seconds


def common_flags(budget: Budget, run_dir: Path, seed: int) -> list[str]:
    flags = [
        "--encoder", budget.encoder, "--frames", str(budget.frames), "--size", *map(str, budget.size),
        "--batch_size", str(budget.batch_size), "--lr", str(budget.lr), "--seed", str(seed),
        "--run_dir", str(run_dir), "--progress_bar", "false",
    ]
    if budget.width is not None:
        flags += ["--width", str(budget.width)]
    if budget.limit_batches is not None:
        flags += ["--limit_train_batches", str(budget.limit_batches), "--limit_val_batches", str(budget.limit_batches)]
    return flags


def train_labelfree(budget: Budget, data_path: Path, run_dir: Path, seed: int, extra: Sequence[str] = ()) -> tuple[Path, float]:
    """Scheme a's ``train_labelfree.py`` run; ``extra`` flags join it (e.g. ``--structures``)."""
    from unilvseg.cli.labelfree import main as labelfree_main

    flags = ["--data_path", str(data_path), "--rounds", str(budget.labelfree_rounds),
             "--early_epochs", str(budget.labelfree_early_epochs), "--round_epochs", str(budget.labelfree_round_epochs)]
    flags += common_flags(budget, run_dir, seed) + list(extra)
    if budget.labelfree_train_videos is not None:
        flags += ["--train_videos", str(budget.labelfree_train_videos)]
    return run_stage(run_dir, {"flags": flags}, lambda: labelfree_main(flags), "checkpoints/final.ckpt")


def train_ssl(budget: Budget, data_path: Path, heldout: Path, run_dir: Path, pretext: str, seed: int) -> tuple[Path, float]:
    from unilvseg.cli.train import main_ssl

    epochs = budget.ssl_epochs if pretext == "temporal_masking" else budget.anatomical_epochs
    flags = ["--data_path", str(data_path), "--pretext", pretext, "--epochs", str(epochs), "--external_dir", json.dumps([str(heldout)])]
    flags += common_flags(budget, run_dir, seed)
    return run_stage(run_dir, {"flags": flags}, lambda: main_ssl(flags), "checkpoints/last.ckpt")


def train_weak(budget: Budget, run_dir: Path, seed: int, data_path: Path | None = None, extra: list[str] = (),
               steps: int | None = None, epochs: int | None = None, depends: dict | None = None) -> tuple[Path, float]:
    """A weak run; ``depends`` (e.g. the hash of the checkpoint or labels it starts from) joins its
    settings, so it trains again when what it builds on changed."""
    from unilvseg.cli.train import main_weak

    flags = (["--data_path", str(data_path)] if data_path is not None else []) + list(extra)
    if steps is not None:
        # A fixed step budget over the few traced videos (one step per epoch): epochs only bound it.
        flags += ["--max_steps", str(steps), "--epochs", "100000"]
        if budget.limit_batches is None:
            flags += ["--limit_val_batches", "1"]
    else:
        flags += ["--epochs", str(epochs)]
    flags += common_flags(budget, run_dir, seed)
    return run_stage(run_dir, {"flags": flags, **(depends or {})}, lambda: main_weak(flags), "checkpoints/last.ckpt")


def last_label_round(labelfree_dir: Path) -> Path:
    """The newest complete label round of a label-free run: the labels its final model trained on."""
    from unilvseg.labelfree.pipeline import COMPLETE

    rounds = sorted(
        (int(p.name[5:]), p) for p in (labelfree_dir / "labels").glob("round*")
        if p.name[5:].isdigit() and (p / COMPLETE).is_file()
    )
    if not rounds:
        raise UserError(f"{labelfree_dir / 'labels'}: no complete label round (run scheme a_labelfree first)")
    return rounds[-1][1]


# -- scoring ------------------------------------------------------------------------------------


def ef_agreement_table(prediction_dir: Path, data_path: Path, samples: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """EF from predicted masks (predict.py's volumes.csv) against FileList's EF, every predicted video.

    EF agreement itself is evaluate_bootstrap.py's (:func:`unilvseg.evaluation.ef_agreement.ef_agreement_intervals`);
    this only pairs predict.py's EF of every predicted video with FileList's. Returns the
    per-video table (FileName, Split, EF_reference, EF_predicted) and MAE, bias and r with 95 %
    bootstrap intervals, r², RMSE and Bland-Altman limits over the videos with both EFs.
    """
    from unilvseg.data.index import load_index
    from unilvseg.evaluation.ef_agreement import ef_agreement_intervals

    volumes = pd.read_csv(prediction_dir / "volumes.csv", dtype={"FileName": str})
    records = load_index(data_path, require_tracings=False).by_name()
    table = pd.DataFrame({
        "FileName": volumes["FileName"],
        "Split": [records[name].split if name in records else "" for name in volumes["FileName"]],
        "EF_reference": [np.nan if name not in records or records[name].ef is None else float(records[name].ef) for name in volumes["FileName"]],
        "EF_predicted": pd.to_numeric(volumes["EF"], errors="coerce"),
    })
    usable = np.isfinite(table["EF_reference"].to_numpy()) & np.isfinite(table["EF_predicted"].to_numpy())
    predicted, reference = table["EF_predicted"].to_numpy()[usable], table["EF_reference"].to_numpy()[usable]
    summary = {"n_videos": int(usable.sum()), "n_missing": int((~usable).sum())}
    if usable.any():
        summary.update(ef_agreement_intervals(predicted, reference, samples=samples, rng=np.random.default_rng(seed)))
    else:
        summary.update({key: float("nan") for key in ("mae", "mae_low", "mae_high", "bias", "r2", "rmse")})
    return table, summary


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pooled_interval(evaluation_dirs: list[Path], splits: list[str], samples: int, seed: int) -> dict:
    """Dice (overall, ED, ES) with 95 % bootstrap intervals over the videos of several
    evaluate_bootstrap.py outputs together (e.g. VAL + TEST), from their per-video pixel counts."""
    from unilvseg.evaluation.bootstrap import bootstrap_dice

    tables = [pd.read_csv(folder / f"{split}_dice.csv") for folder, split in zip(evaluation_dirs, splits)]
    table = pd.concat(tables, ignore_index=True)
    counts = [table[[f"{kind}ED", f"{kind}ES"]].to_numpy(np.int64) for kind in ("Intersection", "PredArea", "TrueArea")]
    intervals = bootstrap_dice(*counts, samples=samples, rng=np.random.default_rng(seed))
    return {"n_videos": len(table), **{key: intervals[key].as_dict("dice") for key in ("overall", "ed", "es")}}


def valtest_counts(evaluation_dirs: list[Path], splits: list[str]) -> pd.DataFrame:
    """Per-video (intersection, predicted, true) pixel counts at ED and ES over the scored splits."""
    tables = [pd.read_csv(folder / f"{split}_dice.csv") for folder, split in zip(evaluation_dirs, splits)]
    columns = [f"{kind}{phase}" for kind in ("Intersection", "PredArea", "TrueArea") for phase in ("ED", "ES")]
    return pd.concat(tables, ignore_index=True).set_index("FileName")[columns].sort_index()


def dense_every_frame(prediction_dir: Path, data_path: Path) -> list[dict]:
    """Every-frame figures against the dense ReferenceMasks: pooled Dice, the area curves'
    correlation, ES/ED area ratios at the reference's beats and the frame-to-frame area change."""
    from benchmarks.real_echo_diagnosis import against_reference
    from unilvseg.data.index import load_index, reference_masks
    from unilvseg.evaluation.metrics import dice_counts, pooled_dice
    from unilvseg.evaluation.predict import load_masks, video_fps

    rows = []
    for record in load_index(data_path, require_tracings=False).records:
        reference = reference_masks(data_path, record.file_name)
        stored = prediction_dir / "masks" / f"{record.file_name}.npz"
        predicted = load_masks(stored) if stored.is_file() else None
        if reference is None or predicted is None or reference.shape[1:] != predicted.shape[1:]:
            continue
        n = min(len(reference), len(predicted))
        inter, pred_area, true_area = dice_counts(predicted[:n], reference[:n])  # per frame
        rows.append({"FileName": record.file_name, "frames": n, "intersection": int(inter.sum()), "pred_area": int(pred_area.sum()),
                     "true_area": int(true_area.sum()), "dice": pooled_dice(inter, pred_area, true_area),
                     **against_reference(pred_area.astype(float), true_area.astype(float), video_fps(record))})
    return rows


def over_seeds(table: pd.DataFrame, counts: dict, ef_all: pd.DataFrame, samples: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per scheme: mean ± sd over seeds, and intervals over seeds and videos (VAL+TEST Dice, EF MAE);
    per scheme against b' (from scratch): the paired difference over seeds and videos."""
    from unilvseg.evaluation.bootstrap import seed_video_bootstrap_dice, seed_video_bootstrap_mean

    def stacked(scheme: str):
        tables = [counts[(scheme, s)] for s in sorted(table.loc[table["scheme"] == scheme, "seed"])]
        names = tables[0].index
        return tuple(np.stack([t.loc[names, [f"{kind}ED", f"{kind}ES"]].to_numpy(np.float64) for t in tables])
                     for kind in ("Intersection", "PredArea", "TrueArea"))

    rows, paired = [], []
    for scheme, group in table.groupby("scheme", sort=False):
        dice = seed_video_bootstrap_dice(stacked(scheme), samples=samples, rng=np.random.default_rng(seed))
        errors = ef_all[ef_all["scheme"] == scheme].pivot_table(index="seed", columns="FileName", values="EF_predicted") \
            - ef_all[ef_all["scheme"] == scheme].pivot_table(index="seed", columns="FileName", values="EF_reference")
        errors = errors.dropna(axis=1)  # a video is scored only where every seed has an EF for it
        mae = seed_video_bootstrap_mean(errors.abs().to_numpy(), samples=samples, rng=np.random.default_rng(seed))
        bias = seed_video_bootstrap_mean(errors.to_numpy(), samples=samples, rng=np.random.default_rng(seed))
        row = {"scheme": scheme, "seeds": len(group), "videos": int(group["valtest_videos"].iloc[0]), "ef_videos": errors.shape[1]}
        for column in ("test_dice_overall", "valtest_dice_overall", "valtest_dice_ed", "valtest_dice_es", "ef_mae", "ef_bias", "ef_r"):
            row[f"{column}_mean"], row[f"{column}_sd"] = float(group[column].mean()), float(group[column].std(ddof=1)) if len(group) > 1 else float("nan")
        for key in ("overall", "ed", "es"):
            row.update({f"valtest_dice_{key}_seeds_videos": dice[key].estimate, f"valtest_dice_{key}_low": dice[key].low,
                        f"valtest_dice_{key}_high": dice[key].high})
        row.update(ef_mae_seeds_videos=mae.estimate, ef_mae_low=mae.low, ef_mae_high=mae.high,
                   ef_bias_seeds_videos=bias.estimate, ef_bias_low=bias.low, ef_bias_high=bias.high)
        rows.append(row)
        if scheme != "b_scratch" and "b_scratch" in set(table["scheme"]):
            same_seeds = sorted(set(group["seed"]) & set(table.loc[table["scheme"] == "b_scratch", "seed"]))
            if same_seeds:
                difference = seed_video_bootstrap_dice(stacked(scheme), stacked("b_scratch"), samples=samples,
                                                       rng=np.random.default_rng(seed), paired_seeds=len(same_seeds) == len(group))
                paired.append({"scheme": scheme, "baseline": "b_scratch", "seeds": len(same_seeds),
                               **{f"diff_{k}": v.estimate for k, v in difference.items()},
                               **{f"diff_{k}_low": v.low for k, v in difference.items()},
                               **{f"diff_{k}_high": v.high for k, v in difference.items()}})
    return pd.DataFrame(rows), pd.DataFrame(paired)


def score(scheme: str, checkpoint: Path, data_path: Path, folder: Path, budget: Budget, seed: int, device: str) -> tuple[dict, pd.DataFrame, float]:
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main

    predictions = folder / "predictions"
    predict_flags = ["--data_path", str(data_path), "--split", "all", "--checkpoint", str(checkpoint),
                     "--save_dir", str(predictions), "--device", device, "--batch_size", str(budget.predict_batch), "--overwrite"]
    if budget.predict_stride is not None:
        predict_flags += ["--stride", str(budget.predict_stride)]
    # The checkpoint's content is part of every scoring stage's settings: a scheme retrained with
    # other settings (same checkpoint path) is predicted and evaluated again, never read stale.
    weights = _sha256(checkpoint)
    _, predict_seconds = run_stage(predictions, {"flags": predict_flags, "weights": weights}, lambda: predict_main(predict_flags), "volumes.csv")
    summaries, dirs = {}, []
    for split in ("test", "val"):
        output = folder / "evaluation" / split
        flags = ["--data_dir", str(data_path), "--prediction_dir", str(predictions), "--output_dir", str(output),
                 "--split", split, "--samples", str(budget.samples), "--seed", str(seed)]
        summary, _ = run_stage(output, {"flags": flags, "weights": weights}, lambda: evaluate_main(flags), "summary.json")
        summaries[split] = json.loads(summary.read_text())
        dirs.append(output)
    pooled = pooled_interval(dirs, ["test", "val"], budget.samples, seed)
    ef_table, ef = ef_agreement_table(predictions, data_path, budget.samples, seed)
    ef_table.insert(0, "scheme", scheme)
    row = {"scheme": scheme, "test_videos": summaries["test"]["n_videos"], "valtest_videos": pooled["n_videos"]}
    for key in ("overall", "ed", "es"):
        for name, block in (("test", summaries["test"][key]), ("valtest", pooled[key])):
            row[f"{name}_dice_{key}"] = block["dice"]
            row[f"{name}_dice_{key}_low"] = block["low"]
            row[f"{name}_dice_{key}_high"] = block["high"]
    row.update({f"ef_{key}": value for key, value in ef.items()})
    return row, ef_table, predict_seconds


# -- plots and report ---------------------------------------------------------------------------


def ef_plots(ef_tables: pd.DataFrame, results: Path) -> list[Path]:
    """Bland–Altman (difference vs mean, bias and ±1.96 SD lines) and predicted-vs-reference
    scatter of EF, one panel per scheme."""
    from matplotlib.figure import Figure

    from unilvseg.io import atomic_path

    schemes = list(dict.fromkeys(ef_tables["scheme"]))
    paths = []
    for kind in ("bland_altman", "scatter"):
        columns = min(3, len(schemes))
        rows = -(-len(schemes) // columns)
        figure = Figure(figsize=(3.6 * columns, 3.4 * rows))
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax in axes[len(schemes):]:
            ax.set_visible(False)
        for ax, scheme in zip(axes, schemes):
            part = ef_tables[ef_tables["scheme"] == scheme].dropna(subset=["EF_reference", "EF_predicted"])
            reference, predicted = part["EF_reference"].to_numpy(), part["EF_predicted"].to_numpy()
            if kind == "bland_altman":
                mean, difference = (reference + predicted) / 2, predicted - reference
                ax.scatter(mean, difference, s=6, alpha=0.6)
                if len(difference):
                    bias, spread = float(difference.mean()), 1.96 * float(difference.std(ddof=1)) if len(difference) > 1 else 0.0
                    for value, style in ((bias, "-"), (bias - spread, "--"), (bias + spread, "--")):
                        ax.axhline(value, color="tab:red", linestyle=style, linewidth=1)
                    ax.set_title(f"{scheme}\nbias {bias:+.1f}, LoA ±{spread:.1f}", fontsize=8)
                ax.axhline(0, color="gray", linewidth=0.8)
                ax.set_xlabel("mean of predicted and reference EF (%)")
                ax.set_ylabel("predicted − reference EF (%)")
            else:
                ax.scatter(reference, predicted, s=6, alpha=0.6)
                ax.plot([0, 100], [0, 100], color="gray", linestyle="--", linewidth=1)
                ax.set_xlim(0, 100)
                ax.set_ylim(0, 100)
                ax.set_xlabel("FileList EF (%)")
                ax.set_ylabel("EF from predicted masks (%)")
                ax.set_title(f"{scheme}, n={len(part)}", fontsize=8)
        figure.tight_layout()
        path = results / f"real_echo_ef_{kind}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        paths.append(path)
    return paths


def _interval(row, prefix: str) -> str:
    value = row[prefix]
    if not np.isfinite(value):
        return "-"
    return f"{value:.3f} ({row[prefix + '_low']:.3f}–{row[prefix + '_high']:.3f})"


def markdown(table: pd.DataFrame, stages: pd.DataFrame | None, meta: dict, seeds_table: pd.DataFrame | None = None,
             paired: pd.DataFrame | None = None, dense: pd.DataFrame | None = None) -> str:
    from benchmarks.labelfree_bench import COLUMNS as STAGE_COLUMNS
    from unilvseg.labelfree.pipeline import report_table

    lines = [
        f"# Real echo: every scheme on {meta['dataset']}",
        "",
        f"Command: `{meta['command']}` at commit {meta.get('commit', 'unknown')}; seeds {meta.get('seeds', [0])}.",
        f"Device: {meta['device']}; wall time of this invocation {meta['wall_seconds'] / 60:.1f} min "
        "(stages finished by an earlier invocation are reused; the seconds columns are each stage's own time).",
        f"Settings: {meta['settings']}.",
        "",
        "Dice: pooled (ratio of sums) at the human-traced ED/ES frames, 95 % bootstrap interval over videos",
        f"(evaluate_bootstrap.py, {meta['samples']} resamples). Only the human-traced VAL and TEST videos count",
        f"({meta['test_videos']} TEST, {meta['valtest_videos']} VAL+TEST): the traced TRAIN videos' tracings come from",
        "EchoNet's DeepLabV3 masks and are trained on. Four videos are a small sample; read the intervals.",
        "No scheme chose its checkpoint on VAL tracings (every run hands on its last checkpoint; label-free runs",
        "from before 2026-12-06 chose theirs on their own pseudo-labels), so VAL is held out like TEST.",
        "EF: from the predicted masks (predict.py volumes.csv, method of disks) against FileList's EF on every",
        f"predicted video ({meta['ef_videos']}); MAE with its 95 % bootstrap interval, bias = predicted − reference.",
        "",
        "| scheme | TEST Dice | TEST ED | TEST ES | VAL+TEST Dice | VAL+TEST ED | VAL+TEST ES | EF MAE | EF R² (1 − SS_res/SS_tot) | EF Pearson r² | EF bias | EF videos | train s (CPU s) | predict s (CPU s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        cells = [LABELS.get(row["scheme"], row["scheme"]) + (f", seed {int(row['seed'])}" if len(meta.get("seeds", [0])) > 1 else "")]
        cells += [_interval(row, f"test_dice_{key}") for key in ("overall", "ed", "es")]
        cells += [_interval(row, f"valtest_dice_{key}") for key in ("overall", "ed", "es")]
        cells += [_interval(row, "ef_mae"), f"{row['ef_r2']:.2f}", f"{row.get('ef_pearson_r2', float('nan')):.2f}", f"{row['ef_bias']:+.1f}", str(int(row["ef_n_videos"])),
                  f"{row['train_seconds']:.0f} ({row['train_cpu_seconds']:.0f})", f"{row['predict_seconds']:.0f} ({row['predict_cpu_seconds']:.0f})"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "`train s` of b and c include their SSL pre-training; d's excludes the label-free run it takes its pseudo-labels from.",
        "CPU s: this process's CPU time in the stage (everything runs in one process), a measure of the work that other",
        "programs on the same cores do not inflate; `nan` for stages reused from a run before CPU time was recorded.",
        "Plots: `real_echo_ef_bland_altman.png`, `real_echo_ef_scatter.png`; per-video EF: `real_echo_ef.csv`.",
    ]
    if seeds_table is not None and len(seeds_table):
        f = lambda v, d=3: "–" if not np.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
        lines += [
            "",
            f"## Over seeds ({len(meta['seeds'])} seeds; {meta['valtest_videos']} VAL+TEST videos, {2 * meta['valtest_videos']} human-traced frames)",
            "",
            "Mean ± sd over seeds of each seed's figure; the 95 % intervals resample seeds and videos together "
            "(`unilvseg.evaluation.bootstrap.seed_video_bootstrap_*`, the bootstrap of `evaluate_bootstrap.py --seeds`). "
            "EF over the videos every seed predicted.",
            "",
            "| scheme | TEST Dice, mean ± sd | VAL+TEST Dice, mean ± sd | VAL+TEST Dice (seeds × videos 95 % CI) | ED | ES | EF MAE, mean ± sd | EF MAE (seeds × videos CI) | EF bias (CI) | EF r, mean ± sd |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in seeds_table.itertuples():
            lines.append(
                f"| {LABELS.get(r.scheme, r.scheme)} | {f(r.test_dice_overall_mean)} ± {f(r.test_dice_overall_sd)} | "
                f"{f(r.valtest_dice_overall_mean)} ± {f(r.valtest_dice_overall_sd)} | "
                f"{f(r.valtest_dice_overall_seeds_videos)} ({f(r.valtest_dice_overall_low)}–{f(r.valtest_dice_overall_high)}) | "
                f"{f(r.valtest_dice_ed_seeds_videos)} ({f(r.valtest_dice_ed_low)}–{f(r.valtest_dice_ed_high)}) | "
                f"{f(r.valtest_dice_es_seeds_videos)} ({f(r.valtest_dice_es_low)}–{f(r.valtest_dice_es_high)}) | "
                f"{f(r.ef_mae_mean, 1)} ± {f(r.ef_mae_sd, 1)} | {f(r.ef_mae_seeds_videos, 1)} ({f(r.ef_mae_low, 1)}–{f(r.ef_mae_high, 1)}) | "
                f"{r.ef_bias_seeds_videos:+.1f} ({r.ef_bias_low:+.1f}–{r.ef_bias_high:+.1f}) | {f(r.ef_r_mean, 2)} ± {f(r.ef_r_sd, 2)} |"
            )
        if paired is not None and len(paired):
            lines += ["", "Paired with b' (from scratch), same seeds and videos: VAL+TEST Dice difference (95 % CI over seeds and videos)", "",
                      "| scheme | seeds | overall | ED | ES |", "|---|---|---|---|---|"]
            for r in paired.itertuples():
                lines.append(f"| {LABELS.get(r.scheme, r.scheme)} | {r.seeds} | " + " | ".join(
                    f"{getattr(r, f'diff_{k}'):+.3f} ({getattr(r, f'diff_{k}_low'):+.3f}–{getattr(r, f'diff_{k}_high'):+.3f})" for k in ("overall", "ed", "es")) + " |")
    if dense is not None and len(dense):
        summary = dense.groupby("scheme", sort=False).agg(
            videos=("FileName", "nunique"), seeds=("seed", "nunique"), frames=("frames", "sum"), inter=("intersection", "sum"),
            pred=("pred_area", "sum"), true=("true_area", "sum"), curve_r=("curve_r", "mean"), ratio=("es_ed_ratio", "mean"),
            ratio_ref=("es_ed_ratio_ref", "mean"), change=("frame_change_vs_ref", "mean"))
        lines += [
            "",
            "## Every frame against the dense references",
            "",
            "ReferenceMasks (EchoNet's DeepLabV3 masks) of the traced TRAIN videos, every frame, for the schemes that did not train on "
            "them (b, b', c and d train on tracings drawn from these masks). Means over videos and seeds.",
            "",
            "| scheme | videos × seeds | frames | Dice (pooled) | area-curve r | ES/ED area ratio | reference ES/ED | frame-to-frame change / reference |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for scheme, r in summary.iterrows():
            lines.append(f"| {LABELS.get(scheme, scheme)} | {r.videos} × {r.seeds} | {int(r.frames)} | {2 * r.inter / max(r.pred + r.true, 1):.3f} | "
                         f"{r.curve_r:.2f} | {r.ratio:.3f} | {r.ratio_ref:.3f} | {r.change:.2f} |")
    if stages is not None:
        lines += [
            "",
            "## Label-free stages on real echo (scheme a's report.csv)",
            "",
            "Dice pooled; `traced` = human-traced ED/ES frames of VAL/TEST, `ReferenceMasks` = every frame where",
            "the folder has them. No tracing or reference mask was used to train or to choose a checkpoint.",
            "",
            *report_table(stages, STAGE_COLUMNS),
        ]
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------


def run_seed(args, budget: Budget, data_path: Path, heldout: Path, work: Path, seed: int):
    """Train every scheme of ``args.schemes`` with ``seed`` in ``work`` and score it. Returns the
    per-scheme rows, EF tables, dense every-frame rows and the VAL+TEST pixel counts per scheme."""
    from unilvseg.io import atomic_path

    labelfree_dir = work / "a_labelfree"
    checkpoints, train_seconds = {}, {}
    needs_labelfree = {"a_labelfree", "d_tracings_pseudo"} & set(args.schemes)
    if needs_labelfree:
        checkpoints["a_labelfree"], train_seconds["a_labelfree"] = train_labelfree(budget, data_path, labelfree_dir, seed)
    for scheme, pretext in (("b_ssl_finetune", "temporal_masking"), ("c_anatomical_finetune", "anatomical_position")):
        if scheme in args.schemes:
            ssl, ssl_seconds = train_ssl(budget, data_path, heldout, work / f"ssl_{pretext}", pretext, seed)
            checkpoints[scheme], seconds = train_weak(budget, work / scheme, seed, data_path, ["--checkpoint", str(ssl)],
                                                      steps=budget.finetune_steps, depends={"start": _sha256(ssl)})
            train_seconds[scheme] = ssl_seconds + seconds
    if "b_scratch" in args.schemes:
        checkpoints["b_scratch"], train_seconds["b_scratch"] = train_weak(budget, work / "b_scratch", seed, data_path, steps=budget.finetune_steps)
    if "d_tracings_pseudo" in args.schemes:
        labels = last_label_round(labelfree_dir)
        log.info("scheme d: pseudo-labels from %s", labels)
        checkpoints["d_tracings_pseudo"], train_seconds["d_tracings_pseudo"] = train_weak(
            budget, work / "d_tracings_pseudo", seed, data_path,
            ["--labels", "tracings+pseudo", "--pseudo_labels", str(labels)], epochs=budget.pseudo_epochs,
            depends={"labels": _sha256(labels / "qc.csv")},
        )
    if "e_phantom" in args.schemes:
        checkpoints["e_phantom"], train_seconds["e_phantom"] = train_weak(budget, work / "e_phantom", seed, epochs=budget.phantom_epochs)

    rows, ef_tables, dense_rows, counts = [], [], [], {}
    final_dir = work / "checkpoints"
    final_dir.mkdir(parents=True, exist_ok=True)
    for scheme in [s for s in SCHEMES if s in args.schemes]:
        final = final_dir / f"{scheme}.ckpt"
        if not final.is_file() or not filecmp.cmp(checkpoints[scheme], final, shallow=False):
            with atomic_path(final) as tmp:
                shutil.copyfile(checkpoints[scheme], tmp)
        scores = work / "scores" / scheme
        row, ef_table, predict_seconds = score(scheme, final, data_path, scores, budget, seed, args.device)
        row.update(
            seed=seed, train_seconds=round(train_seconds[scheme], 1), predict_seconds=round(predict_seconds, 1),
            train_cpu_seconds=round(sum(CPU_SECONDS.get(str(work / name), float("nan")) for name in TRAIN_FOLDERS[scheme]), 1),
            predict_cpu_seconds=CPU_SECONDS.get(str(scores / "predictions"), float("nan")),
            checkpoint=str(final),
        )
        rows.append(row)
        ef_table.insert(1, "seed", seed)
        ef_tables.append(ef_table)
        counts[scheme] = valtest_counts([scores / "evaluation" / split for split in ("test", "val")], ["test", "val"])
        if scheme not in TRAINS_ON_DENSE_REFERENCES:
            dense_rows += [{"scheme": scheme, "seed": seed, **item} for item in dense_every_frame(scores / "predictions", data_path)]
        log.info("%s seed %d: TEST Dice %.3f, VAL+TEST %.3f, EF MAE %.1f (n=%d)", scheme, seed, row["test_dice_overall"],
                 row["valtest_dice_overall"], row["ef_mae"], row["ef_n_videos"])
    return rows, ef_tables, dense_rows, counts


def run(args) -> int:
    from unilvseg.data.index import load_index
    from unilvseg.io import atomic_path, write_csv, write_text

    budget = budget_from_args(args)
    data_path = Path(args.data_path)
    if not (data_path / "FileList.csv").is_file():
        raise UserError(f"--data_path {data_path}: not an EchoNet-Dynamic folder (no FileList.csv)")
    work = Path(args.run_dir or ("runs/real_echo-smoke" if args.smoke else "runs/real_echo"))
    results = Path(args.results_dir) if args.results_dir else (work / "results" if args.smoke else RESULTS_DIR)
    started = time.perf_counter()
    load_at_start = load_average()
    if args.smoke:
        data_path = smoke_subset(data_path, work / "data")
    index = load_index(data_path, require_tracings=False)
    for split in ("test", "val"):
        if not any(r.traced for r in index.split(split).records):
            raise UserError(f"--data_path {data_path}: no traced {split.upper()} video to score")
    heldout = heldout_videos(index, work / "data" / "heldout_videos")
    seeds = args.seeds if args.seeds else [args.seed]
    rows, ef_tables, dense_rows, counts = [], [], [], {}
    for seed in seeds:
        # One seed keeps the run folder itself; several get one folder each.
        folder = work / f"seed{seed}" if args.seeds else work
        seed_rows, seed_ef, seed_dense, seed_counts = run_seed(args, budget, data_path, heldout, folder, seed)
        rows += seed_rows
        ef_tables += seed_ef
        dense_rows += seed_dense
        counts.update({(scheme, seed): value for scheme, value in seed_counts.items()})
    labelfree_dir = (work / f"seed{seeds[0]}" if args.seeds else work) / "a_labelfree"

    table = pd.DataFrame(rows)
    ef_all = pd.concat(ef_tables, ignore_index=True)
    stages = None
    report = labelfree_dir / "report.csv"
    if "a_labelfree" in args.schemes and report.is_file():
        stages = pd.read_csv(report)
        write_csv(stages, results / "real_echo_labelfree_stages.csv", float_format="%.4f")
    write_csv(table, results / "real_echo.csv", float_format="%.4f")
    write_csv(ef_all, results / "real_echo_ef.csv", float_format="%.3f")
    ef_plots(ef_all, results)
    seeds_table = paired = None
    dense = pd.DataFrame(dense_rows)
    if len(dense):
        write_csv(dense, results / "real_echo_dense.csv", float_format="%.4f")
    if args.seeds:
        seeds_table, paired = over_seeds(table, counts, ef_all, budget.samples, seeds[0])
        write_csv(seeds_table, results / "real_echo_seeds.csv", float_format="%.4f")
        write_csv(paired, results / "real_echo_paired.csv", float_format="%.4f")
    from benchmarks.common import git_commit

    commit = git_commit()
    meta = {
        "commit": f"{commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else ""),
        "seeds": seeds,
        "dataset": Path(args.data_path).resolve().name + (" (smoke subset)" if args.smoke else ""),
        "command": portable_command("benchmarks.real_echo", list(sys.argv[1:] if args.argv is None else args.argv)),
        "device": _device_text(load_at_start),
        "wall_seconds": time.perf_counter() - started,
        "settings": _settings_text(budget),
        "samples": budget.samples,
        "test_videos": int(table["test_videos"].iloc[0]),
        "valtest_videos": int(table["valtest_videos"].iloc[0]),
        "ef_videos": f"{int(table['ef_n_videos'].max())} of {len(index)} videos have a reference and a predicted EF",
    }
    text = markdown(table, stages, meta, seeds_table, paired, dense)
    write_text(text, results / "real_echo.md")
    print(text)
    print(f"wrote {results}/real_echo.md, real_echo.csv, real_echo_ef.csv, plots; checkpoints in {work}/**/checkpoints")
    return 0


def _device_text(load_at_start: list[float]) -> str:
    import torch

    from benchmarks.common import cpu_model, usable_cpus

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu_model()}, {usable_cpus()} usable cores, torch threads {torch.get_num_threads()}{gpu}; "
            f"load average at start {load_at_start}, at end {load_average()} (other programs on the cores slow every figure)")


def _settings_text(budget: Budget) -> str:
    values = asdict(budget)
    return ", ".join(f"{key} {value}" for key, value in values.items() if value is not None)


def main(argv: list[str] | None = None) -> int:
    from unilvseg.cli.common import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
