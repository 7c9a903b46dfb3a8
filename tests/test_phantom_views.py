"""One synthetic heart in three views (issue 24): A4C, A2C and mid-papillary SAX of the same 3D
LV, whose exact volume is the FileList truth, so biplane volumes can be scored against it."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unilvseg.data import phantom
from unilvseg.data.index import load_index, paired_views
from unilvseg.data.phantom import MM_PER_PIXEL, SAX_LEVEL, generate_phantom, main
from unilvseg.data.structures import STRUCTURES
from unilvseg.errors import UserError
from unilvseg.evaluation.volumes import _disk_profiles_px, biplane_volumes, volumes_from_masks

# Seed 1's two hearts have ellipticities 1.124 and 0.913: both far enough from 1 (a round LV)
# that a single A4C plane misreads their volumes by about 1/e - 1 (-11 % and +10 %).
SEED, HEARTS, FRAMES = 1, 2, (14, 20)
ALL_VIEWS = ("a4c", "a2c", "sax")


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views") / "ds"
    return generate_phantom(root, videos=HEARTS, seed=SEED, min_frames=FRAMES[0], max_frames=FRAMES[1], views=("sax", "a2c", "a4c"))


@pytest.fixture(scope="module")
def a4c_only(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("a4c") / "ds"
    return generate_phantom(root, videos=HEARTS, seed=SEED, min_frames=FRAMES[0], max_frames=FRAMES[1])


def filelist(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "FileList.csv", dtype={"FileName": str, "Heart": str})


def reference(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(root / "ReferenceMasks" / f"{name}.npz") as archive:
        return archive["masks"], archive["labels"]


def tracing_rows(root: Path) -> dict[str, list[list[str]]]:
    with open(root / "VolumeTracings.csv", newline="") as handle:
        rows: dict[str, list[list[str]]] = {}
        reader = csv.reader(handle)
        assert next(reader) == phantom.TRACING_COLUMNS
        for row in reader:
            rows.setdefault(row[0], []).append(row)
        return rows


def traced_frames(root: Path, name: str) -> dict[int, np.ndarray]:
    frames: dict[int, list] = {}
    for row in tracing_rows(root)[f"{name}.avi"]:
        frames.setdefault(int(row[5]), []).append([float(v) for v in row[1:5]])
    return {f: np.array(r) for f, r in frames.items()}


def ed_es(root: Path, name: str) -> tuple[int, int]:
    """ED / ES of a traced video: the longer / shorter long axis (first row of each frame)."""
    frames = traced_frames(root, name)
    axis = {f: np.hypot(*(rows[0, 2:] - rows[0, :2])) for f, rows in frames.items()}
    return max(axis, key=axis.get), min(axis, key=axis.get)


# ----------------------------------------------------------------------------- layout, A4C unchanged
def test_each_heart_once_per_view_with_view_and_heart_columns(views, a4c_only):
    table, plain = filelist(views), filelist(a4c_only)
    assert list(table.columns) == phantom.FILELIST_COLUMNS + ["View", "Heart", "Ellipticity"]
    assert list(plain.columns) == phantom.FILELIST_COLUMNS  # one view: the usual FileList
    assert list(table["View"]) == ["A4C", "A2C", "SAX"] * HEARTS  # VIEWS order, whatever order was asked
    for heart, name in zip(table["Heart"][::3], plain["FileName"]):
        assert heart == name
        assert list(table.loc[table["Heart"] == heart, "FileName"]) == [name, f"{name}_A2C", f"{name}_SAX"]
    for _, rows in table.groupby("Heart"):  # one truth, timing and split per heart
        for column in ("EF", "EDV", "ESV", "NumberOfFrames", "FPS", "Split", "Ellipticity"):
            assert rows[column].nunique() == 1, column
    assert (phantom.ELLIPTICITY_RANGE[0] <= table["Ellipticity"]).all() and (table["Ellipticity"] <= phantom.ELLIPTICITY_RANGE[1]).all()
    for name in table["FileName"]:
        assert (views / "Videos" / f"{name}.avi").stat().st_size > 0
    traced = {name[: -len(".avi")] for name in tracing_rows(views)}
    assert traced == set(table.loc[table["View"] != "SAX", "FileName"])  # SAX: no long-axis tracing
    assert "views=a4c,a2c,sax" in (views / phantom.COMPLETE_MARKER).read_text()


def test_a4c_files_are_those_of_the_a4c_only_phantom(views, a4c_only):
    plain = filelist(a4c_only)
    for name in plain["FileName"]:
        assert (views / "Videos" / f"{name}.avi").read_bytes() == (a4c_only / "Videos" / f"{name}.avi").read_bytes()
        for got, want in zip(reference(views, name), reference(a4c_only, name)):
            np.testing.assert_array_equal(got, want)
        assert tracing_rows(views)[f"{name}.avi"] == tracing_rows(a4c_only)[f"{name}.avi"]
    a4c_rows = filelist(views).set_index("FileName").loc[plain["FileName"]]
    for column in ("NumberOfFrames", "Split", "FPS"):
        assert list(a4c_rows[column]) == list(plain[column])


def truth_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for name in ("FileList.csv", "VolumeTracings.csv"):
        digest.update((root / name).read_bytes())
    for path in sorted((root / "ReferenceMasks").glob("*.npz")):
        masks, labels = reference(root, path.stem)
        digest.update(path.name.encode())
        digest.update(masks.tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()


def test_default_phantom_is_unchanged_by_the_views(tmp_path):
    """The CSVs, LV masks and label maps of a default phantom, hashed with the code before the
    views existed (commit d5b7e1f). The AVIs were byte-identical too, but JPEG and float32
    exp/power may differ between machines, so they are compared within a run (above) instead.
    A deliberate change of the A4C phantom changes this hash: bump PHANTOM_VERSION and re-pin."""
    root = generate_phantom(tmp_path / "plain", videos=3, seed=11, min_frames=16, max_frames=24, views=["a4c"])
    assert truth_hash(root) == "0e3ac999c9093d97c79082024b08bee61e228f2c8a025033482852560deb9144"


# ----------------------------------------------------------------------------- one heart, three views
def test_every_view_beats_in_time(views):
    table = filelist(views)
    for heart, rows in table.groupby("Heart"):
        names = dict(zip(rows["View"], rows["FileName"]))
        ed, es = ed_es(views, names["A4C"])
        assert ed_es(views, names["A2C"]) == (ed, es)
        areas = {view: reference(views, name)[0].sum(axis=(1, 2)).astype(float) for view, name in names.items()}
        n_frames = int(rows["NumberOfFrames"].iloc[0])
        for view, area in areas.items():
            assert len(area) == n_frames
            # The LV of every view fills and empties together: largest at ED, smallest at ES.
            assert np.corrcoef(area, areas["A4C"])[0, 1] > 0.98, view
            assert area[ed] >= 0.99 * area.max() and area[es] <= 1.01 * area.min(), view


def test_a2c_is_the_a4c_turned_about_the_long_axis(views):
    table = filelist(views)
    for heart, rows in table.groupby("Heart"):
        names = dict(zip(rows["View"], rows["FileName"]))
        ellipticity = float(rows["Ellipticity"].iloc[0])
        ed, _ = ed_es(views, names["A4C"])
        a4c, a4c_labels = reference(views, names["A4C"])
        a2c, a2c_labels = reference(views, names["A2C"])
        # Same length: the traced long axes and the masks' extents along their principal axes.
        axes = [traced_frames(views, names[v])[ed][0] for v in ("A4C", "A2C")]
        assert np.hypot(*(axes[0][2:] - axes[0][:2])) == pytest.approx(np.hypot(*(axes[1][2:] - axes[1][:2])), abs=0.01)
        _, heights = _disk_profiles_px(np.stack([a4c[ed], a2c[ed]]) > 0, 20)
        assert abs(heights[0] - heights[1]) * 20 <= 1.5
        # Width profile ellipticity x the A4C's at the same length: the areas have that ratio.
        assert a2c[ed].sum() / a4c[ed].sum() == pytest.approx(ellipticity, abs=0.02)
        assert set(np.unique(a2c_labels)) == {0, STRUCTURES["lv"], STRUCTURES["myo"], STRUCTURES["la"]}
        assert {STRUCTURES["rv"], STRUCTURES["ra"]} <= set(np.unique(a4c_labels))
        np.testing.assert_array_equal(a2c, a2c_labels == STRUCTURES["lv"])


def test_sax_is_the_mid_papillary_section_with_lv_myo_and_rv(views):
    table = filelist(views)
    for heart, rows in table.groupby("Heart"):
        names = dict(zip(rows["View"], rows["FileName"]))
        ellipticity = float(rows["Ellipticity"].iloc[0])
        ed, _ = ed_es(views, names["A4C"])
        masks, labels = reference(views, names["SAX"])
        np.testing.assert_array_equal(masks, labels == STRUCTURES["lv"])
        assert set(np.unique(labels)) == {0, STRUCTURES["lv"], STRUCTURES["myo"], STRUCTURES["rv"]}  # no atria
        for structure in ("lv", "myo", "rv"):
            assert (labels == STRUCTURES[structure]).any(axis=(1, 2)).all(), structure
        # The cavity is an ellipse of diameters D4 and ellipticity x D4 at SAX_LEVEL: its second
        # moments give the axis ratio, its area pi/4 D4 D2 with D4 the A4C width at that level.
        ys, xs = np.nonzero(masks[ed])
        spread = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
        assert np.sqrt(spread[0] / spread[1]) == pytest.approx(min(ellipticity, 1 / ellipticity), abs=0.03)
        diameters, _ = _disk_profiles_px(reference(views, names["A4C"])[0][ed : ed + 1] > 0, 20)
        d4 = float(np.interp(SAX_LEVEL * 20 - 0.5, np.arange(20), diameters[0]))
        assert masks[ed].sum() == pytest.approx(np.pi / 4 * d4 * d4 * ellipticity, rel=0.08)
        # The RV lies on the septal side (image left, the section is turned by at most 15 degrees).
        rv_ys, rv_xs = np.nonzero(labels[ed] == STRUCTURES["rv"])
        assert rv_xs.mean() < xs.mean() - 0.5 * np.sqrt(spread[1])


# ----------------------------------------------------------------------------- the truth
def test_truth_is_the_3d_body_not_the_a4c_disks(views, a4c_only):
    """EDV/ESV are the 3D LV's: ellipticity x the A4C chords' disks of revolution (20 chords
    against the integral: within 2 %); EF is then nearly the A4C's (the ellipticity is the
    same at every frame)."""
    table, plain = filelist(views).set_index("FileName"), filelist(a4c_only).set_index("FileName")
    for name in plain.index:
        truth, chords = table.loc[name], plain.loc[name]
        assert truth["EF"] == pytest.approx(100 * (truth["EDV"] - truth["ESV"]) / truth["EDV"], abs=2e-3)
        for volume in ("EDV", "ESV"):
            assert truth[volume] / chords[volume] == pytest.approx(truth["Ellipticity"], rel=0.02)
        assert truth["EF"] == pytest.approx(chords["EF"], abs=1.0)


def test_biplane_volumes_of_the_dense_masks_meet_the_truth(views):
    """Biplane method of disks (20 disks) on the dense A4C + A2C truth masks, ED/ES the largest
    and smallest LV of each video (the videos are shorter than a beat): EF within 1.5 points,
    EDV/ESV within 3 % of the 3D truth. What is left is pixelisation of 20-40 px wide masks
    (a pixel of width is 3-5 % of a disk's area; it averages out over 20 disks to about 1 %,
    and partly cancels in EF), measured at most 0.9 points and 2 % on 16 hearts (seed 7). A single A4C
    plane is off by about 1 / ellipticity - 1 in volume (here +10 % and -11 %): biplane beats it."""
    table = filelist(views)
    for heart, rows in table.groupby("Heart"):
        truth = rows.iloc[0]
        names = dict(zip(rows["View"], rows["FileName"]))
        a4c, a2c = reference(views, names["A4C"])[0], reference(views, names["A2C"])[0]
        biplane = biplane_volumes(a4c, a2c, rule="extremes", fps_a4c=50, fps_a2c=50, mm_per_pixel=MM_PER_PIXEL)
        single = volumes_from_masks(a4c, MM_PER_PIXEL, rule="extremes", fps=50)
        assert biplane["method"] == "biplane"
        assert biplane["ef"] == pytest.approx(truth["EF"], abs=1.5)
        for key, column in (("edv", "EDV"), ("esv", "ESV")):
            assert biplane[key] == pytest.approx(truth[column], rel=0.03)
            assert abs(single[key] / truth[column] - 1) > 0.07  # the ellipticities this seed draws
            assert abs(biplane[key] - truth[column]) < 0.5 * abs(single[key] - truth[column])


# ----------------------------------------------------------------------------- index
def test_index_reads_view_and_heart_and_pairs_the_views(views, a4c_only):
    everything = load_index(views, require_tracings=False)
    assert len(everything) == 3 * HEARTS
    by_name = everything.by_name()
    table = filelist(views)
    for row in table.itertuples():
        record = by_name[row.FileName]
        assert record.view == row.View.lower() and record.heart == row.Heart
        assert record.traced == (row.View != "SAX")  # a SAX video loads untraced
    pairs = paired_views(everything)
    assert [(a.file_name, b.file_name) for a, b in pairs] == [(h, f"{h}_A2C") for h in table["Heart"][::3]]
    # Tracings required: the SAX videos are skipped and counted like any untraced video.
    traced = load_index(views)
    assert len(traced) == 2 * HEARTS and sorted(traced.skipped["untraced"]) == sorted(f"{h}_SAX" for h in table["Heart"][::3])
    assert len(paired_views(traced)) == HEARTS
    # A folder without the columns (every EchoNet folder): A4C, no heart, nothing to pair.
    plain = load_index(a4c_only)
    assert {(r.view, r.heart) for r in plain.records} == {("a4c", None)}
    assert paired_views(plain) == []


def _edited_copy(root: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(root, copy)
    table = pd.read_csv(copy / "FileList.csv", dtype=str)
    edit(table)
    table.to_csv(copy / "FileList.csv", index=False)
    return copy


def test_view_column_values_are_checked(views, tmp_path):
    def unknown(table):
        table.loc[4, "View"] = "PLAX"

    copy = _edited_copy(views, tmp_path / "a", unknown)
    name = filelist(views)["FileName"][4]
    with pytest.raises(UserError, match=rf"FileList\.csv: unknown View line 6 \({name}\): 'PLAX'"):
        load_index(copy, require_tracings=False)

    def lower_and_blank(table):  # any case; a blank cell is A4C, a blank Heart is none
        table["View"] = table["View"].str.lower()
        table.loc[0, "View"] = None
        table.loc[2, "Heart"] = None

    index = load_index(_edited_copy(views, tmp_path / "b", lower_and_blank), require_tracings=False)
    assert [r.view for r in index.records][:3] == ["a4c", "a2c", "sax"] and index.records[2].heart is None

    def twice(table):
        table.loc[1, "View"] = "A4C"

    with pytest.raises(UserError, match="more than one video of the same heart and view"):
        load_index(_edited_copy(views, tmp_path / "c", twice), require_tracings=False)


# ----------------------------------------------------------------------------- CLI
def test_cli_views_flag(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--videos", "1", "--seed", "3", "--min_frames", "8", "--max_frames", "10", "--views", "sax", "a4c"]) == 0
    assert "1 phantom hearts (2 views each: A4C, SAX)" in capsys.readouterr().out
    table = filelist(out)
    assert list(table["View"]) == ["A4C", "SAX"] and table["Heart"].nunique() == 1
    assert main(["--out", str(tmp_path / "bad"), "--videos", "1", "--views", "a4c", "plax"]) == 2
    assert "--views a4c plax: expected one or more of a4c, a2c, sax" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
