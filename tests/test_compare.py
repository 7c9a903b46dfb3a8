"""Paired comparison of two prediction folders (evaluate_bootstrap.py --compare) and paper tables
(--table md|latex), on hand-made datasets with known overlaps."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from test_evaluation import _dataset, _expected_dice, _known_predictions, _truths, _write_predictions
from unilvseg.errors import UserError
from unilvseg.evaluation.bootstrap import REFERENCE, VIDEO, bootstrap_dice, paired_bootstrap_dice, resample_indices


def _counts(rng, n):
    true = rng.integers(200, 400, size=(n, 2))
    pred = true + rng.integers(-60, 60, size=(n, 2))
    inter = np.minimum(true, pred) - rng.integers(0, 40, size=(n, 2))
    return inter, pred, true


def test_paired_bootstrap_equals_an_explicit_loop_over_shared_resamples():
    rng = np.random.default_rng(0)
    a, b = _counts(rng, 23), _counts(rng, 23)
    samples = 700
    paired = paired_bootstrap_dice(a, b, samples=samples, rng=np.random.default_rng(5), ci=0.9, convention=VIDEO)
    # The same indices as this folder's own bootstrap_dice from the same seed draws.
    indices = np.concatenate(list(resample_indices(np.random.default_rng(5), 23, samples)))

    def dice(counts, rows, phases):
        inter, pred, true = (np.asarray(c, dtype=float)[rows][:, phases] for c in counts)
        return 2 * inter.sum() / (pred.sum() + true.sum())

    for name, phases in (("overall", [0, 1]), ("ed", [0]), ("es", [1])):
        diffs = np.array([dice(a, row, phases) - dice(b, row, phases) for row in indices])
        low, high = np.quantile(diffs, [0.05, 0.95])
        value = paired[name]
        assert value.difference == pytest.approx(dice(a, slice(None), phases) - dice(b, slice(None), phases))
        assert (value.low, value.high) == pytest.approx((low, high))
        assert value.fraction_not_above_zero == pytest.approx(np.mean(diffs <= 0))
    own = bootstrap_dice(*a, samples=samples, rng=np.random.default_rng(5), ci=0.9)
    assert own["overall"].estimate == pytest.approx(dice(a, slice(None), [0, 1]))


def test_paired_reference_bootstrap_equals_explicit_loops_one_per_statistic():
    # The published convention: overall, ED and ES each get their own resamples, drawn in that
    # order from one generator; overall resamples the 2N traced frames (all ED, then all ES).
    rng = np.random.default_rng(2)
    a, b = _counts(rng, 17), _counts(rng, 17)
    samples = 400
    paired = paired_bootstrap_dice(a, b, samples=samples, rng=np.random.default_rng(9), convention=REFERENCE)
    draws = np.random.default_rng(9)
    frames = [np.concatenate([np.asarray(c, dtype=float)[:, 0], np.asarray(c, dtype=float)[:, 1]]) for c in (*a, *b)]
    per_statistic = {
        "overall": frames,
        "ed": [np.asarray(c, dtype=float)[:, 0] for c in (*a, *b)],
        "es": [np.asarray(c, dtype=float)[:, 1] for c in (*a, *b)],
    }
    for name, (inter_a, pred_a, true_a, inter_b, pred_b, true_b) in per_statistic.items():
        indices = np.concatenate(list(resample_indices(draws, len(inter_a), samples)))
        diffs = np.array([
            2 * inter_a[row].sum() / (pred_a[row].sum() + true_a[row].sum())
            - 2 * inter_b[row].sum() / (pred_b[row].sum() + true_b[row].sum())
            for row in indices
        ])
        ordered = sorted(diffs)
        value = paired[name]
        assert value.difference == pytest.approx(
            2 * inter_a.sum() / (pred_a.sum() + true_a.sum()) - 2 * inter_b.sum() / (pred_b.sum() + true_b.sum()))
        assert (value.low, value.high) == pytest.approx((ordered[round(0.05 * samples)], ordered[round(0.95 * samples)]))
        assert value.fraction_not_above_zero == pytest.approx(np.mean(diffs <= 0))


def test_paired_bootstrap_defaults_and_input_checks():
    rng = np.random.default_rng(4)
    a, b = _counts(rng, 6), _counts(rng, 6)
    # Default: 10,000 resamples from a fresh generator when none is given.
    default = paired_bootstrap_dice(a, b, rng=np.random.default_rng(1))
    explicit = paired_bootstrap_dice(a, b, samples=10_000, rng=np.random.default_rng(1))
    assert default == explicit
    unseeded = paired_bootstrap_dice(a, b, samples=50)
    assert unseeded["overall"].low <= unseeded["overall"].high
    with pytest.raises(ValueError, match="unknown bootstrap convention 'paper'"):
        paired_bootstrap_dice(a, b, samples=10, convention="paper")
    three_columns = tuple(np.concatenate([c, c[:, :1]], axis=1) for c in a)
    with pytest.raises(ValueError, match=r"expects \(n_videos, 2\) counts, got \(6, 3\)"):
        paired_bootstrap_dice(three_columns, b, samples=10)
    with pytest.raises(ValueError, match=r"expects \(n_videos, 2\) counts, got \(6, 2\) and \(5, 2\)"):
        paired_bootstrap_dice((a[0], a[1][:5], a[2][:5]), b, samples=10)
    with pytest.raises(ValueError, match="the same videos for both models, got 6 and 5"):
        paired_bootstrap_dice(a, tuple(c[:5] for c in b), samples=10)


@pytest.mark.parametrize("convention", [VIDEO, REFERENCE])
def test_paired_bootstrap_of_identical_counts_is_exactly_zero(convention):
    a = _counts(np.random.default_rng(1), 15)
    paired = paired_bootstrap_dice(a, a, samples=300, rng=np.random.default_rng(0), convention=convention)
    for value in paired.values():
        assert (value.difference, value.low, value.high, value.fraction_not_above_zero) == (0.0, 0.0, 0.0, 1.0)


def _folders(tmp_path, n_videos=8):
    root = _dataset(tmp_path, n_videos=n_videos)
    truths = _truths(root)
    predictions, expected = _known_predictions(truths)
    perfect, known = tmp_path / "perfect", tmp_path / "known"
    _write_predictions(perfect, truths)
    _write_predictions(known, predictions)
    return root, perfect, known, expected


def test_identical_folders_differ_by_zero_in_summary_and_log(tmp_path):
    from unilvseg.evaluation.evaluate import evaluate_predictions

    root, perfect, known, _ = _folders(tmp_path)
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(known, copy)
    out = tmp_path / "out"
    summary = evaluate_predictions(root, known, out, samples=400, seed=3, compare=copy)
    stored = json.loads((out / "summary.json").read_text())["compare"]
    for key in ("overall", "ed", "es"):
        assert stored[key] == {"difference": 0.0, "low": 0.0, "high": 0.0, "fraction_le_0": 1.0}
    assert stored["n_videos"] == 8 and summary["compare"]["other_prediction_dir"] == str(copy)
    log = (out / "log.csv").read_text()
    assert "test dice difference (overall): +0.0000 (+0.0000 - +0.0000), fraction of resamples <= 0: 1.0000" in log


def test_known_change_gives_the_known_difference(tmp_path, capsys):
    from unilvseg.cli.evaluate import main

    root, perfect, known, expected = _folders(tmp_path)
    out = tmp_path / "out"
    code = main(["--data_dir", str(root), "--prediction_dir", str(perfect), "--output_dir", str(out),
                 "--samples", "2000", "--compare", str(known)])
    assert code == 0
    stored = json.loads((out / "summary.json").read_text())["compare"]
    # Perfect minus known: 1 - Dice(known), with Dice(known) counted by hand in _known_predictions.
    for key, phases in (("overall", (0, 1)), ("ed", (0,)), ("es", (1,))):
        assert stored[key]["difference"] == pytest.approx(1.0 - _expected_dice(expected, phases))
        assert stored[key]["low"] <= stored[key]["difference"] <= stored[key]["high"]
        assert stored[key]["low"] > 0 and stored[key]["fraction_le_0"] < 0.01
    # The other direction flips the sign and the interval.
    back = tmp_path / "back"
    assert main(["--data_dir", str(root), "--prediction_dir", str(known), "--output_dir", str(back),
                 "--samples", "2000", "--compare", str(perfect)]) == 0
    reverse = json.loads((back / "summary.json").read_text())["compare"]
    assert reverse["overall"]["difference"] == pytest.approx(-stored["overall"]["difference"])
    assert (reverse["overall"]["low"], reverse["overall"]["high"]) == pytest.approx((-stored["overall"]["high"], -stored["overall"]["low"]))
    assert reverse["overall"]["fraction_le_0"] > 0.99


def test_compare_needs_the_same_videos(tmp_path):
    from unilvseg.evaluation.evaluate import evaluate_predictions

    root, perfect, known, _ = _folders(tmp_path)
    for path in known.glob("V3*"):
        path.unlink()
    (known / "masks" / "V3.npz").unlink()
    with pytest.raises(UserError, match="--compare .*V3"):
        evaluate_predictions(root, perfect, tmp_path / "out", samples=50, compare=known)
    summary = evaluate_predictions(root, perfect, tmp_path / "out", samples=50, compare=known, allow_missing=True)
    assert summary["compare"]["n_videos"] == 7 and summary["compare"]["left_out_videos"] == ["V3"]
    with pytest.raises(UserError, match="--compare"):
        evaluate_predictions(root, perfect, tmp_path / "out", samples=50, compare=tmp_path / "nowhere")


@pytest.mark.parametrize("fmt", ["md", "latex"])
def test_paper_table_of_several_folders(tmp_path, fmt, capsys):
    from unilvseg.cli.evaluate import main

    root, perfect, known, expected = _folders(tmp_path)
    out = tmp_path / "out"
    assert main(["--data_dir", str(root), "--prediction_dir", str(perfect), str(known), "--output_dir", str(out),
                 "--samples", "300", "--table", fmt]) == 0
    table = (out / ("table.md" if fmt == "md" else "table.tex")).read_text()
    for folder in ("perfect", "known"):
        summary = json.loads((out / folder / "summary.json").read_text())
        row = next(line for line in table.splitlines() if line.lstrip("| ").startswith(folder))
        numbers = [float(x) for x in re.findall(r"\d+\.\d+", row)]
        wanted = [100 * summary[k][f] for k in ("overall", "ed", "es") for f in ("dice", "low", "high")]
        assert numbers == pytest.approx(wanted, abs=0.006)
    known_row = next(line for line in table.splitlines() if "known" in line)
    assert f"{100 * _expected_dice(expected):.2f}" in known_row
    if fmt == "latex":
        assert table.startswith(r"\begin{tabular}") and r"\\" in known_row
    else:
        assert table.startswith("| Method |")


def _eroded(truths, rows_removed: int):
    """Predictions that drop the top ``rows_removed`` LV rows of every traced mask."""
    out = {}
    for name, masks in truths.items():
        pair = []
        for truth in masks:
            pred = truth.copy()
            pred[np.flatnonzero(truth.any(axis=1))[:rows_removed]] = 0
            pair.append(pred)
        out[name] = tuple(pair)
    return out


def test_seeds_compare_several_folders_per_method(tmp_path, capsys):
    """--seeds: each seed's block equals a one-folder --compare of that pair, and the pooled
    difference is the difference of the mean-over-seeds Dice with an interval over seeds and videos."""
    from unilvseg.cli.evaluate import main

    root = _dataset(tmp_path, n_videos=8)
    truths = _truths(root)
    a_dirs, b_dirs = [], []
    for seed, (a_rows, b_rows) in enumerate([(1, 3), (2, 2), (0, 4)]):
        a_dirs.append(tmp_path / f"a{seed}")
        b_dirs.append(tmp_path / f"b{seed}")
        _write_predictions(a_dirs[-1], _eroded(truths, a_rows))
        _write_predictions(b_dirs[-1], _eroded(truths, b_rows))
    out = tmp_path / "out"
    argv = ["--data_dir", str(root), "--output_dir", str(out), "--samples", "800", "--seeds",
            "--prediction_dir", *map(str, a_dirs), "--compare", *map(str, b_dirs)]
    assert main(argv) == 0
    block = json.loads((out / "seeds_summary.json").read_text())
    assert block["n_videos"] == 8 and len(block["per_seed"]) == 3

    singles = []
    for a, b in zip(a_dirs, b_dirs):
        single = tmp_path / "single" / a.name
        assert main(["--data_dir", str(root), "--output_dir", str(single), "--samples", "800",
                     "--prediction_dir", str(a), "--compare", str(b)]) == 0
        singles.append(json.loads((single / "summary.json").read_text()))
    for item, single in zip(block["per_seed"], singles):
        assert item["overall"] == single["compare"]["overall"]
    mean_a = np.mean([s["overall"]["dice"] for s in singles])
    mean_diff = np.mean([s["compare"]["overall"]["difference"] for s in singles])
    assert block["a"]["overall"]["estimate"] == pytest.approx(mean_a)
    assert block["overall"]["estimate"] == pytest.approx(mean_diff)
    assert block["overall"]["low"] <= block["overall"]["estimate"] <= block["overall"]["high"]
    # Seed 1 ties (2 rows each): its interval is exactly 0; seeds 0 and 2 favour A.
    assert block["seeds_interval_above_0"] == 2 and block["seeds_interval_below_0"] == 0
    log = (out / "seeds_log.csv").read_text()
    assert "3 seed(s) of A against 3 of B on the same 8 test videos" in log and "2 of 3 intervals above 0" in log
    # One folder per side without --seeds keeps the old meaning; several need --seeds.
    capsys.readouterr()
    assert main(["--data_dir", str(root), "--output_dir", str(tmp_path / "x"), "--prediction_dir", str(a_dirs[0]),
                 "--compare", *map(str, b_dirs)]) == 2
    assert "add --seeds" in capsys.readouterr().err
