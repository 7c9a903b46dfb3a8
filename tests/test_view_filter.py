"""``predict.py --view`` and ``evaluate_bootstrap.py --view`` (issue 24): a view's checkpoint on a
folder of several views predicts, and is scored on, that view's videos only.

A three-view phantom (2 hearts, 16-20 frames). Prediction: an untrained checkpoint, so only which
videos get a masks file is tested. Evaluation: the phantom's reference label maps written as
the predictions of one view and empty label maps as those of the others, so a score of exactly 1
means only that view's videos were scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unilvseg.data.index import load_index
from unilvseg.data.phantom import generate_phantom
from unilvseg.data.structures import reference_labels
from unilvseg.errors import UserError
from unilvseg.evaluation.evaluate import evaluate_predictions
from unilvseg.evaluation.predict import Layout, Settings, assemble_tables, write_video_outputs

HEARTS = 2


@pytest.fixture(scope="module")
def three_views(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views") / "ds"
    return generate_phantom(root, videos=HEARTS, seed=7, min_frames=16, max_frames=20, views=("a4c", "a2c", "sax"))


@pytest.fixture(scope="module")
def checkpoint(untrained_tiny_checkpoint) -> Path:
    return untrained_tiny_checkpoint


def names_of(root: Path, view: str) -> list[str]:
    table = pd.read_csv(root / "FileList.csv", dtype={"FileName": str})
    return sorted(table.loc[table["View"] == view.upper(), "FileName"])


def predicted_names(save: Path) -> list[str]:
    return sorted(path.stem for path in (save / "masks").glob("*.npz"))


def run_predict(*argv) -> int:
    from unilvseg.cli.predict import main

    return main([str(a) for a in argv] + ["--device", "cpu", "--batch_size", "1"])


@pytest.mark.parametrize("view", ["a2c", "sax"])
def test_predict_view_predicts_only_that_views_videos(three_views, checkpoint, tmp_path, view):
    save = tmp_path / "pred"
    assert run_predict("--data_path", three_views, "--split", "all", "--view", view, "--checkpoint", checkpoint, "--save_dir", save) == 0
    assert predicted_names(save) == names_of(three_views, view) and len(predicted_names(save)) == HEARTS
    volumes = pd.read_csv(save / "volumes.csv", dtype={"FileName": str})
    assert sorted(volumes["FileName"]) == names_of(three_views, view)


def test_predict_without_view_predicts_every_video_and_view_needs_a_filelist(three_views, checkpoint, tmp_path):
    save = tmp_path / "pred"
    assert run_predict("--data_path", three_views, "--split", "all", "--checkpoint", checkpoint, "--save_dir", save) == 0
    assert len(predicted_names(save)) == 3 * HEARTS
    assert run_predict("--external_dir", three_views / "Videos", "--view", "a2c", "--checkpoint", checkpoint, "--save_dir", tmp_path / "x") == 2


def label_predictions(root: Path, save: Path, view: str) -> None:
    """The reference label maps as the predictions of ``view``'s videos, empty ones as the others'."""
    layout = Layout(save)
    settings = Settings(checkpoint="reference", frames=16, stride=8, batch_size=1, threshold=0.5, mean=[0.0] * 3, std=[1.0] * 3,
                        mm_per_pixel=1.4, size=(112, 112), overlay_format=None)
    for record in load_index(root, require_tracings=False).records:
        labels, _ = reference_labels(root, record.file_name)
        if record.view != view:
            labels = np.zeros_like(labels)
        write_video_outputs(layout, record, (labels == 1).astype(np.uint8), None, settings, only_missing=False, labels=labels)
    assemble_tables(layout)


def test_evaluate_view_scores_only_that_views_traced_videos(three_views, tmp_path):
    """A2C: the label-map scores are exactly 1 (the A4C's empty predictions are not scored), over
    the A2C videos and their structures only, and the traced-frame Dice (against the tracings'
    polygons, so not exactly 1) is the A2C videos'; without --view the A4C videos pull it down."""
    save = tmp_path / "pred"
    label_predictions(three_views, save, "a2c")
    summary = evaluate_predictions(three_views, save, tmp_path / "a2c", split="all", samples=50, view="a2c")
    assert summary["view"] == "a2c" and summary["n_videos"] == HEARTS and summary["n_untraced"] == 0
    assert summary["overall"]["dice"] > 0.9
    assert sorted(pd.read_csv(tmp_path / "a2c" / "all_dice.csv", dtype={"FileName": str})["FileName"]) == names_of(three_views, "a2c")
    assert set(summary["structures"]["dice"]) == {"lv", "myo", "la"} and summary["structures"]["n_videos"] == HEARTS
    for scores in summary["structures"]["dice"].values():
        assert scores["all_frames"]["dice"] == pytest.approx(1.0) and scores["ed"]["dice"] == pytest.approx(1.0)
    assert sorted(pd.read_csv(tmp_path / "a2c" / "all_ef.csv", dtype={"FileName": str})["FileName"]) == names_of(three_views, "a2c")
    everything = evaluate_predictions(three_views, save, tmp_path / "every", split="all", samples=50)
    assert everything["n_videos"] == 2 * HEARTS and everything["overall"]["dice"] < 0.7


def test_evaluate_view_scores_untraced_sax_videos_on_their_label_maps(three_views, tmp_path):
    """SAX has no tracing: the label maps of every SAX video are scored (exactly 1 here, the
    others' empty maps left out), with no traced-frame Dice and no EF; a SAX video without a
    prediction is an error unless --allow_missing."""
    save = tmp_path / "pred"
    label_predictions(three_views, save, "sax")
    summary = evaluate_predictions(three_views, save, tmp_path / "sax", split="all", samples=50, view="sax")
    assert summary["n_videos"] == 0 and summary["n_untraced"] == HEARTS
    assert "overall" not in summary and "ef" not in summary
    assert set(summary["structures"]["dice"]) == {"lv", "myo", "rv"} and summary["structures"]["n_videos"] == HEARTS
    for scores in summary["structures"]["dice"].values():
        assert scores["all_frames"]["dice"] == pytest.approx(1.0)
    assert summary["all_frames"]["n_videos"] == HEARTS and summary["all_frames"]["dice"] == pytest.approx(1.0)
    (save / "masks" / f"{names_of(three_views, 'sax')[0]}.npz").unlink()
    with pytest.raises(UserError, match=r"1 video\(s\) have no prediction.*of 2 all videos of view SAX"):
        evaluate_predictions(three_views, save, tmp_path / "sax2", split="all", samples=50, view="sax")
    summary = evaluate_predictions(three_views, save, tmp_path / "sax3", split="all", samples=50, view="sax", allow_missing=True)
    assert summary["n_untraced"] == HEARTS - 1 and summary["structures"]["n_videos"] == HEARTS - 1


def test_evaluate_cli_view_flag(three_views, tmp_path):
    from unilvseg.cli.evaluate import main

    save = tmp_path / "pred"
    label_predictions(three_views, save, "sax")
    argv = ["--data_dir", str(three_views), "--prediction_dir", str(save), "--split", "all", "--samples", "20"]
    assert main(argv + ["--output_dir", str(tmp_path / "o"), "--view", "SAX"]) == 0
    assert main(argv + ["--output_dir", str(tmp_path / "t"), "--view", "sax", "--table", "md"]) == 2
    assert main(argv + ["--output_dir", str(tmp_path / "s"), "--view", "sax", "--seeds", "--compare", str(save)]) == 2
