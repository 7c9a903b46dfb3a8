"""Weak-supervision Dice benchmarks (not CI).

phantom: ``3d_unet_small`` trained by ``train_weak.py`` on a 40-video phantom for at most
         15 minutes; reports the validation Dice curve on traced frames.
real:    on an EchoNet folder (e.g. ../shared/data/echonet-real-mini), weak training with and
         without temporal-masking SSL pre-training (SSL on all its videos plus external ones);
         checkpoint chosen on VAL, Dice on VAL and TEST traced frames via predict + evaluate.

    python -m benchmarks.weak_dice phantom [--minutes 15] [--videos 40]
    python -m benchmarks.weak_dice real --data_path ../shared/data/echonet-real-mini \
        --external_dir ../shared/data/echo-external
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import commit_note, portable_command
from unilvseg.io import write_csv, write_text

RESULTS = Path(__file__).resolve().parent / "results"


def _train_weak(argv: list[str]) -> None:
    from unilvseg.cli.train import main_weak

    status = main_weak(argv)
    if status != 0:
        raise SystemExit(f"train_weak.py failed with status {status}: {' '.join(argv)}")


def _curve(run_dir: Path) -> pd.DataFrame:
    metrics = pd.read_csv(run_dir / "metrics.csv")
    seconds = metrics.dropna(subset=["epoch_seconds"]).groupby("epoch")["epoch_seconds"].sum().cumsum()
    dice = metrics.dropna(subset=["val_dice"]).groupby("epoch")[["val_dice", "val_dice_ed", "val_dice_es"]].last()
    curve = dice.join(seconds.rename("train_seconds"), how="left").reset_index()
    curve["train_minutes"] = curve["train_seconds"] / 60
    return curve


def phantom(args) -> dict:
    from unilvseg.data.phantom import default_data_path

    data = Path(args.data_path) if args.data_path else default_data_path(videos=args.videos, seed=0)
    run_dir = Path(args.run_dir or f"runs/bench/weak_dice-phantom-{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.perf_counter()
    _train_weak([
        "--data_path", str(data), "--encoder", args.encoder, "--frames", str(args.frames),
        "--batch_size", str(args.batch_size), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--max_time", f"00:00:{args.minutes:02d}:00", "--seed", str(args.seed),
        "--run_dir", str(run_dir), "--progress_bar", "false",
    ])
    wall = time.perf_counter() - started
    curve = _curve(run_dir)
    best = curve.loc[curve["val_dice"].idxmax()]
    result = {
        "benchmark": "weak_dice-phantom", "data": str(data), "encoder": args.encoder, "frames": args.frames,
        "batch_size": args.batch_size, "budget_minutes": args.minutes, "wall_seconds": round(wall, 1),
        "best_val_dice": round(float(best["val_dice"]), 4), "best_epoch": int(best["epoch"]),
        "best_val_dice_ed": round(float(best["val_dice_ed"]), 4), "best_val_dice_es": round(float(best["val_dice_es"]), 4),
        "epochs_run": int(curve["epoch"].max()) + 1, "run_dir": str(run_dir),
    }
    write_csv(curve, RESULTS / "weak_dice-phantom-curve.csv")
    _plot(curve, RESULTS / "weak_dice-phantom-curve.png", f"{args.encoder}, T={args.frames}, phantom ({args.videos} videos)")
    lines = [
        f"# Weak supervision on the phantom ({args.encoder}, T={args.frames}, batch {args.batch_size}, {args.minutes}-minute budget)",
        "",
        f"Command: `{portable_command('benchmarks.weak_dice', args.argv)}` at {commit_note()}; one run.",
        "",
        f"Best validation Dice on traced frames: **{result['best_val_dice']:.4f}** (ED {result['best_val_dice_ed']:.4f}, "
        f"ES {result['best_val_dice_es']:.4f}) at epoch {result['best_epoch']}; {result['epochs_run']} epochs in {wall / 60:.1f} min wall.",
        "",
        curve[["epoch", "train_minutes", "val_dice", "val_dice_ed", "val_dice_es"]].round(4).to_markdown(index=False),
    ]
    write_text("\n".join(lines) + "\n", RESULTS / "weak_dice-phantom.md")
    print("\n".join(lines))
    print(json.dumps(result))
    return result


def _plot(curve: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unilvseg.io import atomic_path

    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = curve["train_minutes"] if curve["train_minutes"].notna().all() else curve["epoch"]
    for column, label in (("val_dice", "both"), ("val_dice_ed", "ED"), ("val_dice_es", "ES")):
        ax.plot(x, curve[column], marker="o", ms=3, label=label)
    ax.axhline(0.9, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("training minutes" if x is curve["train_minutes"] else "epoch")
    ax.set_ylabel("validation Dice (traced frames)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _evaluate(data: Path, checkpoint: Path, out: Path, split: str) -> dict:
    from unilvseg.cli.evaluate import main as evaluate_main
    from unilvseg.cli.predict import main as predict_main

    predictions = out / f"predictions-{split}"
    if predict_main(["--data_path", str(data), "--checkpoint", str(checkpoint), "--save_dir", str(predictions), "--split", split]) != 0:
        raise SystemExit(f"predict.py failed on {split}")
    evaluation = out / f"evaluation-{split}"
    if evaluate_main(["--data_dir", str(data), "--prediction_dir", str(predictions), "--output_dir", str(evaluation), "--split", split, "--samples", "2000"]) != 0:
        raise SystemExit(f"evaluate_bootstrap.py failed on {split}")
    return json.loads((evaluation / "summary.json").read_text())


def real(args) -> dict:
    from unilvseg.cli.train import main_ssl

    data = Path(args.data_path)
    root = Path(args.run_dir or f"runs/bench/weak_dice-real-{time.strftime('%Y%m%d-%H%M%S')}")
    common = ["--data_path", str(data), "--encoder", args.encoder, "--frames", str(args.frames), "--batch_size", "2",
              "--seed", str(args.seed), "--progress_bar", "false", "--lr", str(args.lr)]
    ssl_dir = root / "ssl"
    ssl_argv = common + ["--epochs", str(args.ssl_epochs), "--run_dir", str(ssl_dir), "--mask_ratio", "0.6"]
    if args.external_dir:
        ssl_argv += ["--external_dir", json.dumps([str(f) for f in args.external_dir])]
    if main_ssl(ssl_argv) != 0:
        raise SystemExit("train_ssl.py failed")
    rows = []
    for name, extra in (("scratch", []), ("temporal-masking SSL", ["--checkpoint", str(ssl_dir / "checkpoints" / "best.ckpt")])):
        run_dir = root / name.split()[0]
        _train_weak(common + ["--epochs", str(args.epochs), "--run_dir", str(run_dir)] + extra)
        best = run_dir / "checkpoints" / "best.ckpt"
        for split in ("val", "test"):
            summary = _evaluate(data, best, run_dir, split)
            rows.append({"start": name, "split": split, "dice": summary["overall"]["dice"], "dice_ed": summary["ed"]["dice"], "dice_es": summary["es"]["dice"]})
    table = pd.DataFrame(rows)
    tag = data.name
    write_csv(table, RESULTS / f"weak_dice-{tag}.csv")
    text = (
        f"# Weak supervision on {tag} ({args.encoder}, T={args.frames}, {args.epochs} epochs; SSL {args.ssl_epochs} epochs)\n\n"
        f"Command: `{portable_command('benchmarks.weak_dice', args.argv)}` at {commit_note()}; seed {args.seed}, one run.\n\n"
        "Checkpoint chosen on VAL Dice; Dice on traced frames (ratio of sums). Tiny data: one VAL and one TEST video. "
        "The TEST figure is reported once, for the record: nothing was chosen or tuned by it.\n\n"
        + table.round(4).to_markdown(index=False) + "\n"
    )
    write_text(text, RESULTS / f"weak_dice-{tag}.md")
    print(text)
    return {"rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = argparse.ArgumentParser(add_help=False)  # flags both benchmarks take
    shared.add_argument("--encoder", default="3d_unet_small")
    shared.add_argument("--frames", type=int, default=16)
    shared.add_argument("--lr", type=float, default=1e-3)
    shared.add_argument("--seed", type=int, default=0)
    shared.add_argument("--run_dir", default=None)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("phantom", parents=[shared])
    p.add_argument("--data_path", default=None)
    p.add_argument("--videos", type=int, default=40)
    p.add_argument("--minutes", type=int, default=15)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=25)
    r = sub.add_parser("real", parents=[shared])
    r.add_argument("--data_path", required=True)
    r.add_argument("--external_dir", nargs="*", default=[])
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--ssl_epochs", type=int, default=30)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    (phantom if args.which == "phantom" else real)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
