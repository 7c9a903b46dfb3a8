"""Generated dataset files and configs (hypothesis, derandomised so every run draws the same
cases): each ends in success or a clear error, and nothing is read or written outside its folder.

* 1,000+ FileList.csv / VolumeTracings.csv / config files go straight to the index, the tracing
  reader and the argument parser (milliseconds each);
* a few dozen generated FileLists also go through ``predict.py`` and ``evaluate_bootstrap.py``
  on the tiny phantom, with the file tree checked before and after.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_hostile import run_command, snapshot  # noqa: E402

from unilvseg.data.index import DatasetIndex, load_index  # noqa: E402
from unilvseg.data.tracings import read_tracings  # noqa: E402
from unilvseg.errors import UserError  # noqa: E402

FUZZ = settings(
    derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
VIDEOS = ["v0", "v1", "v2", "0X1A2B"]
HOSTILE = ["../x", "../../outside/evil", "/abs/x", "a/b", "a\\b", "..", ".", "nul\x00x", "new\nline", "C:evil", "", " "]
FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]

names = st.one_of(st.sampled_from(VIDEOS), st.sampled_from([v + ".avi" for v in VIDEOS]), st.sampled_from(HOSTILE),
                  st.text(max_size=12))
cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.text(max_size=8),
    st.sampled_from(["", "nan", "inf", "-1", "1e400", "TRAIN", "val", "Test", "EXTERNAL", "1,5"]),
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"])


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write(path: Path, text: str, encoding: str) -> None:
    path.write_bytes(text.encode(encoding, errors="replace"))


@st.composite
def filelists(draw):
    columns = list(FILELIST_COLUMNS)
    if draw(st.booleans()):
        columns = draw(st.lists(st.sampled_from(FILELIST_COLUMNS + ["Extra", " Split ", "filename", "View", "Heart"]), max_size=10))
    elif draw(st.booleans()):  # the optional View / Heart columns of a multi-view folder
        columns += ["View", "Heart"]
    views = st.one_of(cells, st.sampled_from(["A4C", "a2c", " SAX ", "PLAX", ""]))
    hearts = st.one_of(cells, st.sampled_from(["h1", "h2", ""]))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        column_values = {"FileName": names, "filename": names, "View": views, "Heart": hearts}
        row = [draw(column_values.get(c.strip(), cells)) for c in columns]
        if "Split" in columns and draw(st.booleans()):
            row[columns.index("Split")] = draw(st.sampled_from(["TRAIN", "VAL", "TEST"]))
        rows.append(row[: draw(st.integers(0, len(row)))] if draw(st.integers(0, 9)) == 0 else row)
    return _csv_text(columns, rows), draw(encodings)


@st.composite
def tracing_files(draw):
    columns = TRACING_COLUMNS if draw(st.integers(0, 4)) else draw(st.lists(st.sampled_from(TRACING_COLUMNS + ["Z"]), max_size=7))
    rows = []
    for _ in range(draw(st.integers(0, 3))):
        name, frame = draw(names), draw(st.one_of(st.integers(0, 60), cells))
        for _ in range(draw(st.integers(1, 6))):
            numbers = draw(st.lists(st.one_of(st.floats(0, 112), cells), min_size=4, max_size=4))
            rows.append(([name] + numbers + [frame]) if len(columns) == 6 else [draw(cells) for _ in columns])
    return _csv_text(columns, rows), draw(encodings)


def _dataset(root: Path) -> Path:
    (root / "Videos").mkdir(parents=True)
    for name in VIDEOS:
        (root / "Videos" / f"{name}.avi").write_bytes(b"not decoded by the index")
    return root


def _check_index(index: DatasetIndex, root: Path) -> None:
    videos = (root / "Videos").resolve()
    for record in index.records:
        assert record.path.resolve().parent == videos, record.path


@settings(FUZZ, max_examples=500)
@given(filelist=filelists(), tracings=st.one_of(st.none(), tracing_files()), require=st.booleans())
def test_generated_filelists_and_tracings_index_or_fail_clearly(filelist, tracings, require):
    with tempfile.TemporaryDirectory() as scratch:
        root = _dataset(Path(scratch) / "data")
        _write(root / "FileList.csv", *filelist)
        if tracings is not None:
            _write(root / "VolumeTracings.csv", *tracings)
        before = snapshot(Path(scratch))
        try:
            index = load_index(root, require_tracings=require)
        except UserError as error:
            assert str(error).strip() and "\n" not in str(error).splitlines()[0]
        else:
            _check_index(index, root)
        assert snapshot(Path(scratch)) == before


@settings(FUZZ, max_examples=300)
@given(tracings=tracing_files())
def test_generated_tracing_files_parse_or_fail_clearly(tracings):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        _write(root / "VolumeTracings.csv", *tracings)
        try:
            traced = read_tracings(root)
        except UserError as error:
            assert "VolumeTracings.csv" in str(error)
        else:
            from unilvseg.untrusted import name_problem

            assert all(name_problem(name) is None for name in traced)


def _weak_parser():
    from unilvseg.cli.train import weak_parser

    return weak_parser()


CONFIG_KEYS = ["data_path", "frames", "period", "batch_size", "num_workers", "augment", "encoder", "lr", "epochs",
               "seed", "run_dir", "resume", "checkpoint", "mean", "std", "labels", "loss", "trust_checkpoint", "bogus"]
config_values = st.one_of(cells, st.none(), st.booleans(), st.lists(cells, max_size=4),
                          st.dictionaries(st.text(max_size=4), cells, max_size=2))


@settings(FUZZ, max_examples=300)
@given(config=st.one_of(st.dictionaries(st.sampled_from(CONFIG_KEYS), config_values, max_size=6), config_values),
       raw=st.one_of(st.none(), st.text(max_size=40)))
def test_generated_configs_parse_or_fail_clearly(config, raw):
    parser = _weak_parser()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "config.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump(config))
        before = snapshot(Path(scratch))
        stderr = io.StringIO()
        try:
            from contextlib import redirect_stderr

            with redirect_stderr(stderr):
                args = parser.parse_args(["--config", str(path)])
        except SystemExit as exit_info:
            assert exit_info.code == 2 and "error" in stderr.getvalue().lower() and "Traceback" not in stderr.getvalue()
        else:
            assert isinstance(args.frames, int) and isinstance(args.trust_checkpoint, bool)
        assert snapshot(Path(scratch)) == before


# ---------------------------------------------------------------------- through the commands


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import torch

    from unilvseg.tasks.weak import WeakSegmentationTask

    torch.manual_seed(0)
    task = WeakSegmentationTask(encoder="3d_unet_tiny", frames=16)
    path = tmp_path_factory.mktemp("fuzz-ckpt") / "weak.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "unilvseg_task": task.task_name,
                "unilvseg_data": {"size": [32, 32]}}, path)
    return path


@st.composite
def phantom_filelists(draw, real_names: list[str]):
    pool = st.one_of(st.sampled_from(real_names), st.sampled_from(HOSTILE), st.text(max_size=6))
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        rows.append([draw(pool), draw(st.one_of(st.floats(0, 100), cells)), draw(st.one_of(st.integers(20, 60), cells)),
                     draw(st.one_of(st.just("TEST"), st.sampled_from(["TRAIN", "VAL", "test", "other"])))])
    return _csv_text(["FileName", "EF", "NumberOfFrames", "Split"], rows)


@pytest.mark.slow
def test_generated_filelists_through_predict_and_evaluate(tiny_phantom, tiny_checkpoint, tmp_path, capsys):
    import pandas as pd

    real_names = sorted(pd.read_csv(tiny_phantom / "FileList.csv", dtype={"FileName": str})["FileName"])
    outcomes = []

    @settings(FUZZ, max_examples=30)
    @given(filelist=phantom_filelists(real_names))
    def case(filelist):
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        data = Path(shutil.copytree(tiny_phantom, work / "data"))
        (data / "FileList.csv").write_text(filelist)
        out, evaluation = work / "out", work / "evaluation"
        before = snapshot(work)
        capsys.readouterr()
        status = run_command("predict", [str(a) for a in ["--checkpoint", tiny_checkpoint, "--data_path", data, "--split", "all",
                                                          "--save_dir", out, "--device", "cpu"]])
        err = capsys.readouterr().err
        assert status in (0, 2) and "Traceback" not in err, err
        outcomes.append(status)
        if status == 2:
            assert any(line.startswith("error:") for line in err.splitlines()) and not out.exists(), err
        else:
            evaluated = run_command("evaluate", ["--prediction_dir", str(out), "--output_dir", str(evaluation), "--split", "all",
                                              "--samples", "20", "--allow_missing"])
            err = capsys.readouterr().err
            assert evaluated in (0, 2) and "Traceback" not in err, err
        # Only the two output folders are new; nothing else changed or vanished.
        after = {k: v for k, v in snapshot(work).items() if not k.startswith(("out/", "evaluation/"))}
        assert after == before
        shutil.rmtree(work)

    case()
    # predict.py's statuses: both outcomes drawn, so both paths were exercised.
    assert len(outcomes) >= 30 and 0 in outcomes and 2 in outcomes
