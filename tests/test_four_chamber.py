"""Weak labels of every A4C structure (unilvseg.labelfree.four_chamber): on a drawn A4C video
and against the phantom's dense truth. The label maker was shaped on phantom seed 11 and on this
fixture (seed 0: its RV failures led to the septal-strip anchor), so the floors below are
regression guards, not held-out figures."""

from __future__ import annotations

import numpy as np

from test_labelfree_real_echo import synthetic_a4c
from unilvseg.data.structures import STRUCTURES, reference_labels
from unilvseg.labelfree.classical import weak_lv_labels
from unilvseg.labelfree.four_chamber import four_chamber_labels


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_drawn_chambers_are_found_where_they_are_drawn():
    video, lv, la, rv = synthetic_a4c()
    labels, info = four_chamber_labels(video)
    assert labels.dtype == np.uint8 and labels.shape == lv.shape and info["septum"] is not None
    classical, _ = weak_lv_labels(video)
    assert np.array_equal(labels == STRUCTURES["lv"], classical > 0)  # the LV label is the anchor, unchanged
    assert _dice(labels == STRUCTURES["rv"], np.broadcast_to(rv, lv.shape)) > 0.85  # measured 0.91
    assert _dice(labels == STRUCTURES["la"], np.broadcast_to(la, lv.shape)) > 0.55  # measured 0.64
    # Anatomical order: RV left of the LV, LA below it; the myocardium hugs the cavity.
    ys, xs = np.mgrid[0:lv.shape[1], 0:lv.shape[2]]
    centre = lambda k: (xs[labels[0] == k].mean(), ys[labels[0] == k].mean())  # noqa: E731
    assert centre(STRUCTURES["rv"])[0] < centre(STRUCTURES["lv"])[0] < centre(STRUCTURES["myo"])[0] + 10
    assert centre(STRUCTURES["la"])[1] > centre(STRUCTURES["lv"])[1]


def test_a_given_lv_anchors_the_other_structures():
    video, lv, _, rv = synthetic_a4c()
    labels, _ = four_chamber_labels(video, lv_masks=lv.astype(np.uint8))
    assert np.array_equal(labels == STRUCTURES["lv"], lv)
    assert _dice(labels == STRUCTURES["rv"], np.broadcast_to(rv, lv.shape)) > 0.85
    # An empty LV anchors nothing: only background comes back.
    empty, _ = four_chamber_labels(video, lv_masks=np.zeros_like(lv, dtype=np.uint8))
    assert not empty.any()


def test_phantom_structures_against_their_dense_truth(tiny_phantom):
    from unilvseg.data.video import read_video

    pooled = {name: [0, 0] for name in STRUCTURES}
    for path in sorted((tiny_phantom / "Videos").glob("*.avi")):
        truth, _ = reference_labels(tiny_phantom, path.stem)
        labels, _ = four_chamber_labels(read_video(path))
        for name, k in STRUCTURES.items():
            predicted, true = labels == k, truth == k
            pooled[name][0] += 2 * int((predicted & true).sum())
            pooled[name][1] += int(predicted.sum() + true.sum())
    dice = {name: a / b for name, (a, b) in pooled.items()}
    # Floors a little under what this code measured on the 6-video fixture (see the module's
    # benchmark for held-out figures); a label maker that swaps sides or picks the fan's dark
    # rim falls far below them.
    floors = {"lv": 0.85, "myo": 0.65, "la": 0.80, "rv": 0.60, "ra": 0.50}  # measured 0.91 0.74 0.90 0.68 0.59
    assert all(dice[name] > floor for name, floor in floors.items()), {k: round(v, 3) for k, v in dice.items()}


def test_without_a_septum_the_lv_edge_stands_in(monkeypatch):
    from unilvseg.labelfree import four_chamber

    video, lv, _, rv = synthetic_a4c()
    monkeypatch.setattr(four_chamber, "find_septum", lambda *args, **kwargs: None)
    labels, info = four_chamber_labels(video)
    assert info["septum"] is None
    assert _dice(labels == STRUCTURES["rv"], np.broadcast_to(rv, lv.shape)) > 0.6  # still left of the LV


def test_benchmark_writes_pooled_dice_per_structure(tmp_path):
    import pandas as pd

    from benchmarks.four_chamber_labels import main

    assert main(["--videos", "2", "--seed", "3", "--samples", "50", "--results_dir", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "four_chamber_labels-phantom.csv")
    assert set(table["structure"]) == set(STRUCTURES) and table["FileName"].nunique() == 2
    text = (tmp_path / "four_chamber_labels-phantom.md").read_text()
    assert all(f"| {name} |" in text for name in STRUCTURES)
