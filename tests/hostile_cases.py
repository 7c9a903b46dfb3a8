"""Hostile inputs and what every command does with them: one table, used twice.

``tests/test_hostile.py`` runs each case through the real command (``train_ssl.py``,
``train_weak.py``, ``predict.py``, ``evaluate_bootstrap.py`` entry points, in-process, tiny
settings) and checks the promised behaviour; ``python -m tests.hostile_cases --docs`` (alias
``--readme``) writes the same table into docs/reliability.md.

Three behaviours are allowed:

* ``error``: exit status 2, one ``error: ...`` line on stderr naming the culprit (the expected
  substring), no traceback, and no output folder left behind;
* ``skip``: the run completes (exit 0) and the bad video is counted and logged (expected
  substring in the log), or counted in ``metrics.csv`` (``skipped_videos``);
* ``works``: odd but valid input is read correctly (exit 0).

No case may leave a ``.tmp-*`` file or a half-written output anywhere.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# -- the environment a case builds in -----------------------------------------------------------


@dataclass
class Env:
    """Shared, read-only inputs plus a private work folder for one case."""

    phantom: Path  # tiny phantom EchoNet folder (read-only)
    work: Path  # private folder of this case
    weak_run: Path  # finished train_weak.py run folder (checkpoints/best.ckpt, last.ckpt)
    ssl_run: Path  # finished train_ssl.py run folder
    predictions: Path  # predict.py --split all output for the phantom (read-only)

    @property
    def out(self) -> Path:
        """The run/save/output folder the command is pointed at."""
        return self.work / "out"

    @property
    def weak_ckpt(self) -> Path:
        return self.weak_run / "checkpoints" / "last.ckpt"

    @property
    def ssl_ckpt(self) -> Path:
        return self.ssl_run / "checkpoints" / "last.ckpt"

    def data(self) -> Path:
        """A private copy of the phantom this case may damage."""
        target = self.work / "echonet"
        if not target.exists():
            shutil.copytree(self.phantom, target)
        return target

    def prediction_copy(self) -> Path:
        target = self.work / "predictions"
        if not target.exists():
            shutil.copytree(self.predictions, target)
        return target


# -- command lines --------------------------------------------------------------------------------

TRAIN_FAST = [
    "--encoder", "3d_unet_tiny", "--frames", "16", "--batch_size", "2", "--epochs", "1",
    "--limit_train_batches", "1", "--limit_val_batches", "1", "--progress_bar", "false",
    "--accelerator", "cpu", "--devices", "1",
]


def train(env: Env, data: Path | str | None = None, *extra) -> list[str]:
    data = env.phantom if data is None else data
    return ["--data_path", str(data), *TRAIN_FAST, "--run_dir", str(env.out), *map(str, extra)]


def predict(env: Env, *extra, checkpoint: Path | str | None = None) -> list[str]:
    checkpoint = env.weak_ckpt if checkpoint is None else checkpoint
    return ["--checkpoint", str(checkpoint), "--save_dir", str(env.out), "--device", "cpu", "--size", "32", "32",
            *map(str, extra)]


def evaluate(env: Env, prediction_dir: Path | str | None = None, data: Path | str | None = None, *extra) -> list[str]:
    return ["--data_dir", str(env.phantom if data is None else data),
            "--prediction_dir", str(env.predictions if prediction_dir is None else prediction_dir),
            "--output_dir", str(env.out), "--split", "all", "--samples", "50", *map(str, extra)]


# -- helpers that damage a phantom copy -----------------------------------------------------------


def _filelist(root: Path):
    import pandas as pd

    return pd.read_csv(root / "FileList.csv", dtype={"FileName": str})


def _tracings(root: Path):
    import pandas as pd

    return pd.read_csv(root / "VolumeTracings.csv", dtype={"FileName": str})


def pd_concat(*tables):
    import pandas as pd

    return pd.concat(tables, ignore_index=True)


def _write(table, path: Path) -> None:
    table.to_csv(path, index=False)


def train_names(root: Path) -> list[str]:
    table = _filelist(root)
    return sorted(table.loc[table["Split"].str.upper() == "TRAIN", "FileName"])


def first_train(root: Path) -> str:
    return train_names(root)[0]


def only_two_train_videos(root: Path) -> list[str]:
    """Keep two TRAIN videos (the rest become TEST) so one batch of 2 holds both."""
    table = _filelist(root)
    keep = train_names(root)[:2]
    table.loc[(table["Split"].str.upper() == "TRAIN") & ~table["FileName"].isin(keep), "Split"] = "TEST"
    _write(table, root / "FileList.csv")
    return keep


def edit_frame_rows(root: Path, name: str, which: str, edit: Callable) -> None:
    """Apply ``edit(rows)`` to the tracing rows of ``name``'s ED or ES frame (chosen by area order)."""
    from unilvseg.data.tracings import read_tracings, ed_es_frames

    traced = read_tracings(root)[name]
    ed, es = ed_es_frames(traced)
    frame = ed if which == "ED" else es
    table = _tracings(root)
    rows = (table["FileName"].str.replace(".avi", "", regex=False) == name) & (table["Frame"] == frame)
    table = table.astype({"X1": object, "Y1": object, "X2": object, "Y2": object, "Frame": object})
    table.loc[rows] = edit(table.loc[rows].copy())
    _write(table, root / "VolumeTracings.csv")


def write_avi(path: Path, video, fps: float = 50, color: bool = True) -> None:
    import cv2
    import numpy as np

    video = np.asarray(video, dtype=np.uint8)
    height, width = video.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height), color)
    assert writer.isOpened(), path
    try:
        for frame in video:
            if color:
                frame = frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=-1)
            else:
                frame = frame if frame.ndim == 2 else frame[..., 0]
            writer.write(np.ascontiguousarray(frame))
    finally:
        writer.release()


def resize_dataset(root: Path, height: int, width: int) -> None:
    """Every video, FileList size and tracing rescaled to height x width (EchoNet videos are 112x112)."""
    import cv2
    import numpy as np

    from unilvseg.data.video import read_video

    for path in (root / "Videos").glob("*.avi"):
        video = read_video(path)
        write_avi(path, np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in video]))
    table = _filelist(root)
    table["FrameHeight"], table["FrameWidth"] = height, width
    _write(table, root / "FileList.csv")
    tracings = _tracings(root)
    tracings[["X1", "X2"]] *= width / 112
    tracings[["Y1", "Y2"]] *= height / 112
    _write(tracings, root / "VolumeTracings.csv")


# -- builders -------------------------------------------------------------------------------------
# Each takes the Env, damages what it needs and returns the command's argv.


def b_filelist_missing(env):
    root = env.data()
    (root / "FileList.csv").unlink()
    return train(env, root)


def b_filelist_empty(env):
    root = env.data()
    (root / "FileList.csv").write_bytes(b"")
    return train(env, root)


def b_filelist_header_only(env):
    root = env.data()
    header = (root / "FileList.csv").read_text().splitlines()[0]
    (root / "FileList.csv").write_text(header + "\n")
    return train(env, root)


def b_bom_crlf(env):
    root = env.data()
    for name in ("FileList.csv", "VolumeTracings.csv"):
        text = (root / name).read_text()
        (root / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    return train(env, root)


def b_filelist_extra_columns(env):
    root = env.data()
    table = _filelist(root)
    table.insert(1, "Operator", "sonographer, 2nd")
    table["Comment"] = "extra"
    _write(table, root / "FileList.csv")
    return train(env, root)


def b_filelist_missing_split(env):
    root = env.data()
    _write(_filelist(root).drop(columns=["Split"]), root / "FileList.csv")
    return train(env, root)


def b_filelist_unknown_split(env):
    root = env.data()
    table = _filelist(root)
    table.loc[1, "Split"] = "TRAINING"
    _write(table, root / "FileList.csv")
    return train(env, root)


def b_filelist_duplicate(env):
    root = env.data()
    table = _filelist(root)
    _write(pd_concat(table, table.iloc[[2]]), root / "FileList.csv")
    return train(env, root)


def b_filelist_name_leaves_folder(env):
    root = env.data()
    table = _filelist(root)
    table.loc[0, "FileName"] = "../../outside/evil"
    _write(table, root / "FileList.csv")
    return predict(env, "--data_path", root, "--split", "all")


def b_tracings_name_leaves_folder(env):
    root = env.data()
    rows = _tracings(root)
    extra = rows.head(4).copy()
    extra["FileName"] = "../evil.avi"
    _write(pd_concat(rows, extra), root / "VolumeTracings.csv")
    return train(env, root)


def b_ckpt_runs_code(env):
    """A checkpoint whose unpickling would write a file (as a __reduce__ to os.system would run)."""
    import torch

    class _Payload:
        def __reduce__(self):
            return (open, (str(env.work / "MARKER"), "w"))

    path = env.work / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    return predict(env, "--data_path", env.phantom, checkpoint=path)


def b_video_listed_missing(env):
    root = env.data()
    (root / "Videos" / f"{first_train(root)}.avi").unlink()
    return train(env, root)


def b_no_train_videos(env):
    root = env.data()
    table = _filelist(root)
    table["Split"] = table["Split"].replace({"TRAIN": "TEST"})
    _write(table, root / "FileList.csv")
    return train(env, root)


def b_tracings_missing(env):
    root = env.data()
    (root / "VolumeTracings.csv").unlink()
    return train(env, root)


def b_tracings_missing_ssl(env):
    root = env.data()
    (root / "VolumeTracings.csv").unlink()
    return train(env, root, "--mask_ratio", "0.5")


def b_tracings_empty(env):
    root = env.data()
    (root / "VolumeTracings.csv").write_bytes(b"")
    return train(env, root)


def b_tracings_wrong_header(env):
    root = env.data()
    _write(_tracings(root).rename(columns={"Frame": "FrameNumber"}), root / "VolumeTracings.csv")
    return train(env, root)


def _frame_value(value):
    def edit(rows):
        rows["Frame"] = value
        return rows

    return edit


def b_tracings_negative_frame(env):
    root = env.data()
    edit_frame_rows(root, first_train(root), "ES", _frame_value(-3))
    return train(env, root)


def b_tracings_fractional_frame(env):
    root = env.data()
    edit_frame_rows(root, first_train(root), "ES", _frame_value(12.5))
    return train(env, root)


def b_tracings_frame_past_end(env):
    root = env.data()
    edit_frame_rows(root, first_train(root), "ES", _frame_value(999))
    return train(env, root)


def _coordinate(value, row: int = 3):
    def edit(rows):
        rows.iloc[row, rows.columns.get_loc("X1")] = value
        return rows

    return edit


def b_tracings_nan(env):
    root = env.data()
    edit_frame_rows(root, first_train(root), "ED", _coordinate("NaN"))
    return train(env, root)


def b_tracings_inf(env):
    root = env.data()
    edit_frame_rows(root, first_train(root), "ED", _coordinate("inf"))
    return train(env, root)


def b_tracings_text(env):
    root = env.data()
    edit_frame_rows(root, first_train(root), "ED", _coordinate("12,5"))
    return train(env, root)


def b_tracings_outside(env):
    root = env.data()

    def shift(rows):
        for column in ("X1", "X2"):
            rows[column] = rows[column].astype(float) + 400.0
        return rows

    edit_frame_rows(root, first_train(root), "ES", shift)
    return train(env, root)


def b_tracings_single_frame(env):
    root = env.data()
    name = first_train(root)
    from unilvseg.data.tracings import ed_es_frames, read_tracings

    _, es = ed_es_frames(read_tracings(root)[name])
    table = _tracings(root)
    drop = (table["FileName"] == f"{name}.avi") & (table["Frame"] == es)
    _write(table[~drop], root / "VolumeTracings.csv")
    return train(env, root)


def b_tracings_three_frames(env):
    root = env.data()
    name = first_train(root)
    from unilvseg.data.tracings import ed_es_frames, read_tracings

    ed, es = ed_es_frames(read_tracings(root)[name])
    table = _tracings(root)
    rows = table[(table["FileName"] == f"{name}.avi") & (table["Frame"] == ed)].copy()
    # A middle-sized tracing on a third frame, listed first: ED/ES must stay the extremes.
    centre_x = rows[["X1", "X2"]].to_numpy().mean()
    for column in ("X1", "X2"):
        rows[column] = centre_x + 0.9 * (rows[column] - centre_x)
    rows["Frame"] = min(ed, es) + 1
    _write(pd_concat(rows, table), root / "VolumeTracings.csv")
    (env.work / "expected_ed_es.txt").write_text(f"{name} {ed} {es}")
    return train(env, root)


def c_three_frames(env):
    from unilvseg.data.index import load_index

    name, ed, es = (env.work / "expected_ed_es.txt").read_text().split()
    record = load_index(env.work / "echonet").by_name()[name]
    assert (record.ed_frame, record.es_frame) == (int(ed), int(es)), (record.ed_frame, record.es_frame, ed, es)


def b_tracings_unlisted_video(env):
    root = env.data()
    table = _tracings(root)
    extra = table.iloc[:25].copy()
    extra["FileName"] = "0XNOTLISTED.avi"
    _write(pd_concat(table, extra), root / "VolumeTracings.csv")
    return train(env, root)


def b_video_zero_byte(env):
    root = env.data()
    (root / "Videos" / f"{first_train(root)}.avi").write_bytes(b"")
    return train(env, root)


def b_video_not_a_video(env):
    root = env.data()
    broken, _ = only_two_train_videos(root)
    (root / "Videos" / f"{broken}.avi").write_text("RIFF? no: this is a text file with an .avi name\n" * 200)
    return train(env, root)


def b_video_truncated(env):
    root = env.data()
    broken, _ = only_two_train_videos(root)
    path = root / "Videos" / f"{broken}.avi"
    path.write_bytes(path.read_bytes()[:2048])
    return train(env, root)


def b_video_not_a_video_worker(env):
    return b_video_not_a_video(env) + ["--num_workers", "1"]


def c_one_skipped_video(env):
    import pandas as pd

    metrics = pd.read_csv(env.out / "metrics.csv")
    assert "skipped_videos" in metrics.columns, list(metrics.columns)
    assert metrics["skipped_videos"].sum() == 1, metrics["skipped_videos"].tolist()


def b_video_one_frame(env):
    root = env.data()
    from unilvseg.data.video import read_video

    name = first_train(root)
    path = root / "Videos" / f"{name}.avi"
    write_avi(path, read_video(path)[:1])
    table = _filelist(root)
    table.loc[table["FileName"] == name, "NumberOfFrames"] = 1
    _write(table, root / "FileList.csv")
    (env.work / "one_frame.txt").write_text(name)
    return train(env, root, "--mask_ratio", "0.5")


def b_video_one_frame_weak(env):
    argv = b_video_one_frame(env)
    return argv[: argv.index("--mask_ratio")]


def b_video_64(env):
    root = env.data()
    resize_dataset(root, 64, 64)
    return train(env, root)


def b_video_160x120(env):
    root = env.data()
    resize_dataset(root, 120, 160)
    return train(env, root)


def b_video_grayscale(env):
    root = env.data()
    from unilvseg.data.video import read_video

    for path in (root / "Videos").glob("*.avi"):
        write_avi(path, read_video(path)[..., 0], color=False)
    return train(env, root)


def b_videos_folder_missing(env):
    root = env.data()
    shutil.rmtree(root / "Videos")
    return train(env, root)


def b_predict_broken_video(env):
    folder = env.work / "videos"
    folder.mkdir()
    good = sorted((env.phantom / "Videos").glob("*.avi"))[0]
    shutil.copy(good, folder / good.name)
    (folder / "broken.avi").write_text("not a video\n" * 100)
    return predict(env, "--external_dir", folder)


def b_predict_all_broken(env):
    folder = env.work / "videos"
    folder.mkdir()
    (folder / "broken.avi").write_text("not a video\n" * 100)
    return predict(env, "--external_dir", folder)


def b_ckpt_other_task_predict(env):
    return predict(env, "--data_path", env.phantom, checkpoint=env.ssl_ckpt)


def b_ckpt_other_task_resume(env):
    run = env.work / "ssl_run"
    shutil.copytree(env.ssl_run, run)
    return train(env, None, "--resume", run / "checkpoints" / "last.ckpt")


def b_ckpt_other_task_resume_explicit(env):
    # The weak run's own folder, but a pre-training checkpoint given to --resume.
    run = env.work / "weak_run"
    shutil.copytree(env.weak_run, run)
    shutil.copy(env.ssl_ckpt, run / "checkpoints" / "ssl.ckpt")
    return train(env, None, "--resume", run / "checkpoints" / "ssl.ckpt")


def b_ckpt_other_encoder_transfer(env):
    return train(env, None, "--checkpoint", env.ssl_ckpt, "--encoder", "si_tiny")


def b_ckpt_other_encoder_resume(env):
    run = env.work / "weak_run"
    shutil.copytree(env.weak_run, run)
    return train(env, None, "--resume", run / "checkpoints" / "last.ckpt", "--encoder", "3d_unet_small", "--width", "4")


def _corrupt(env) -> Path:
    import numpy as np

    path = env.work / "corrupt.ckpt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _truncated(env) -> Path:
    path = env.work / "truncated.ckpt"
    data = env.weak_ckpt.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def b_ckpt_corrupt_predict(env):
    return predict(env, "--data_path", env.phantom, checkpoint=_corrupt(env))


def b_ckpt_truncated_transfer(env):
    return train(env, None, "--checkpoint", _truncated(env))


def b_ckpt_corrupt_resume(env):
    run = env.work / "weak_run"
    shutil.copytree(env.weak_run, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(_corrupt(env).read_bytes())
    return train(env, None, "--resume", last)


def b_ckpt_empty_predict(env):
    path = env.work / "empty.ckpt"
    path.write_bytes(b"")
    return predict(env, "--data_path", env.phantom, checkpoint=path)


def b_ckpt_bare_state_dict(env):
    import torch

    from unilvseg.tasks.transfer import read_checkpoint

    path = env.work / "bare.pt"
    torch.save(read_checkpoint(env.weak_ckpt)["state_dict"], path)
    return predict(env, "--data_path", env.phantom, checkpoint=path)


def b_ckpt_nan_weights(env):
    import torch

    from unilvseg.tasks.transfer import read_checkpoint

    checkpoint = read_checkpoint(env.weak_ckpt)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    path = env.work / "nan.ckpt"
    torch.save(checkpoint, path)
    return predict(env, "--data_path", env.phantom, checkpoint=path)


def b_pred_png_wrong_size(env):
    import cv2
    import numpy as np

    folder = env.prediction_copy()
    png = sorted(folder.glob("*_ED.png"))[0]
    cv2.imwrite(str(png), np.zeros((64, 64), np.uint8))
    return evaluate(env, folder)


def b_pred_png_wrong_size_allowed(env):
    return b_pred_png_wrong_size(env) + ["--allow_missing"]


def b_pred_folder_empty(env):
    folder = env.work / "predictions"
    folder.mkdir()
    return evaluate(env, folder)


def b_pred_folder_missing(env):
    return evaluate(env, env.work / "no-such-folder")


def b_pred_npz_corrupt(env):
    folder = env.prediction_copy()
    for png in folder.glob("*.png"):
        png.unlink()  # the traced frames must now come from the npz
    npz = sorted((folder / "masks").glob("*.npz"))[0]
    npz.write_bytes(npz.read_bytes()[:100])
    return evaluate(env, folder)


def b_predict_save_dir_is_file(env):
    env.work.mkdir(parents=True, exist_ok=True)
    env.out.write_text("i am a file")
    return predict(env, "--data_path", env.phantom)


def _flags(*extra):
    def build(env):
        return train(env, None, *extra)

    return build


def b_cache_dir_is_file(env):
    env.work.mkdir(parents=True, exist_ok=True)
    cache = env.work / "cache-file"
    cache.write_text("i am a file")
    return train(env, None, "--cache_dir", cache)


def b_run_dir_is_file(env):
    env.work.mkdir(parents=True, exist_ok=True)
    env.out.write_text("i am a file")
    return train(env)


def b_evaluate_output_dir_is_file(env):
    env.work.mkdir(parents=True, exist_ok=True)
    env.out.write_text("i am a file")
    return evaluate(env)


def b_data_path_file(env):
    path = env.work / "data.csv"
    path.write_text("FileName,Split\n")
    return train(env, path)


def b_data_path_missing(env):
    return train(env, env.work / "nowhere")


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    description: str
    command: str  # train_weak, train_ssl, predict, evaluate
    build: Callable[[Env], list[str]]
    outcome: str  # error, skip, works
    expect: str = ""  # error: substring of the error line; skip: substring of the log
    behaviour: str = ""  # the sentence for the table
    check: Callable[[Env], None] | None = None  # extra assertions after the command
    tags: tuple[str, ...] = field(default_factory=tuple)


E, S, W = "error", "skip", "works"

CASES: list[Case] = [
    # FileList.csv
    Case("filelist_missing", "FileList.csv", "no FileList.csv in --data_path", "train_weak", b_filelist_missing, E,
         "FileList.csv not found", "error naming the file"),
    Case("filelist_empty", "FileList.csv", "0-byte FileList.csv", "train_weak", b_filelist_empty, E,
         "FileList.csv: file is empty", "error naming the file"),
    Case("filelist_header_only", "FileList.csv", "header but no rows", "train_weak", b_filelist_header_only, E,
         "no videos listed", "error naming the file"),
    Case("bom_crlf", "FileList.csv", "UTF-8 BOM and CRLF line endings in FileList.csv and VolumeTracings.csv",
         "train_weak", b_bom_crlf, W, "", "read normally"),
    Case("filelist_extra_columns", "FileList.csv", "extra columns (one with a quoted comma)", "train_weak",
         b_filelist_extra_columns, W, "", "extra columns ignored"),
    Case("filelist_missing_split", "FileList.csv", "no Split column", "train_weak", b_filelist_missing_split, E,
         "column 'Split' missing", "error naming the column and the header found"),
    Case("filelist_unknown_split", "FileList.csv", "Split value TRAINING", "train_weak", b_filelist_unknown_split, E,
         "unknown Split ['training'] at line(s) [3]", "error naming the value and the line"),
    Case("filelist_duplicate", "FileList.csv", "a FileName listed twice", "train_weak", b_filelist_duplicate, E,
         "FileName listed more than once", "error naming the video and lines"),
    Case("filelist_name_leaves_folder", "FileList.csv", "FileName ../../outside/evil", "predict", b_filelist_name_leaves_folder, E,
         "FileName must be a single file name", "error naming the file, line and name; nothing read or written"),
    Case("video_listed_missing", "FileList.csv", "a listed video absent from Videos/", "train_weak",
         b_video_listed_missing, S, "skipped 1 video(s) (missing video)", "counted skip, logged"),
    Case("no_train_videos", "FileList.csv", "no TRAIN rows", "train_weak", b_no_train_videos, E,
         "split 'train' has no usable videos", "error naming the split"),
    # VolumeTracings.csv
    Case("tracings_name_leaves_folder", "VolumeTracings.csv", "rows whose FileName is ../evil.avi", "train_weak",
         b_tracings_name_leaves_folder, S, "whose FileName cannot be a file name", "rows skipped, counted and logged with the line"),
    Case("tracings_missing", "VolumeTracings.csv", "no VolumeTracings.csv (weak training)", "train_weak",
         b_tracings_missing, E, "VolumeTracings.csv not found", "error naming the file"),
    Case("tracings_missing_ssl", "VolumeTracings.csv", "no VolumeTracings.csv (self-supervised training)",
         "train_ssl", b_tracings_missing_ssl, W, "", "not needed: trains"),
    Case("tracings_empty", "VolumeTracings.csv", "0-byte VolumeTracings.csv", "train_weak", b_tracings_empty, E,
         "VolumeTracings.csv: file is empty", "error naming the file and the expected header"),
    Case("tracings_wrong_header", "VolumeTracings.csv", "column Frame renamed FrameNumber", "train_weak",
         b_tracings_wrong_header, E, "expected exactly FileName,X1,Y1,X2,Y2,Frame", "error showing both headers"),
    Case("tracings_negative_frame", "VolumeTracings.csv", "negative Frame on one traced frame", "train_weak",
         b_tracings_negative_frame, S, "skipped 1 video(s) (bad tracing)", "video counted as bad tracing, skipped"),
    Case("tracings_fractional_frame", "VolumeTracings.csv", "Frame 12.5", "train_weak", b_tracings_fractional_frame,
         S, "skipped 1 video(s) (bad tracing)", "video counted as bad tracing, skipped"),
    Case("tracings_frame_past_end", "VolumeTracings.csv", "traced Frame beyond NumberOfFrames", "train_weak",
         b_tracings_frame_past_end, S, "skipped 1 video(s) (bad tracing)", "video counted as bad tracing, skipped"),
    Case("tracings_nan", "VolumeTracings.csv", "NaN coordinate", "train_weak", b_tracings_nan, S,
         "skipped 1 video(s) (bad tracing)", "video counted as bad tracing, skipped"),
    Case("tracings_inf", "VolumeTracings.csv", "inf coordinate", "train_weak", b_tracings_inf, S,
         "skipped 1 video(s) (bad tracing)", "video counted as bad tracing, skipped"),
    Case("tracings_text", "VolumeTracings.csv", "coordinate written with a decimal comma (\"12,5\")", "train_weak",
         b_tracings_text, S, "skipped 1 video(s) (bad tracing)", "video counted as bad tracing, skipped"),
    Case("tracings_outside_image", "VolumeTracings.csv", "polygon shifted 400 px outside the 112x112 image",
         "train_weak", b_tracings_outside, S, "skipped 1 video(s) (bad tracing)",
         "video counted as bad tracing, skipped (it would train on an empty mask)"),
    Case("tracings_single_frame", "VolumeTracings.csv", "only one traced frame", "train_weak",
         b_tracings_single_frame, S, "skipped 1 video(s) (untraced)", "counted as untraced, skipped"),
    Case("tracings_three_frames", "VolumeTracings.csv", "three traced frames, a middle-sized one listed first",
         "train_weak", b_tracings_three_frames, W, "", "ED = largest, ES = smallest traced area", c_three_frames),
    Case("tracings_unlisted_video", "VolumeTracings.csv", "tracings of a video not in FileList.csv", "train_weak",
         b_tracings_unlisted_video, W, "", "ignored"),
    # videos
    Case("video_zero_byte", "videos", "0-byte AVI", "train_weak", b_video_zero_byte, S,
         "skipped 1 video(s) (empty video)", "counted skip at indexing, logged"),
    Case("video_not_a_video", "videos", "text file named .avi", "train_weak", b_video_not_a_video, S,
         "skipping video in this batch", "skipped in its batch, logged, skipped_videos=1 in metrics.csv",
         c_one_skipped_video),
    Case("video_not_a_video_worker", "videos", "text file named .avi, decoded in a DataLoader worker (--num_workers 1)",
         "train_weak", b_video_not_a_video_worker, S, "", "epoch continues; skipped_videos=1 in metrics.csv",
         c_one_skipped_video, tags=("workers",)),
    Case("video_truncated", "videos", "AVI cut to its first 2 KiB", "train_weak", b_video_truncated, S,
         "skipping video in this batch", "skipped in its batch, logged, skipped_videos=1 in metrics.csv",
         c_one_skipped_video),
    Case("video_one_frame_ssl", "videos", "1-frame video (self-supervised)", "train_ssl", b_video_one_frame, W, "",
         "clip padded by repeating the frame"),
    Case("video_one_frame_weak", "videos", "1-frame video whose tracings point past its end (weak)", "train_weak",
         b_video_one_frame_weak, S, "skipped 1 video(s) (bad tracing)", "counted as bad tracing, skipped"),
    Case("video_64x64", "videos", "64x64 videos, tracings in 64x64 pixels", "train_weak", b_video_64, W, "",
         "frames and masks resized to 112x112"),
    Case("video_160x120", "videos", "160x120 (non-square) videos", "train_weak", b_video_160x120, W, "",
         "frames and masks resized to 112x112"),
    Case("video_grayscale", "videos", "single-channel (grayscale) AVIs", "train_weak", b_video_grayscale, W, "",
         "read as 3 equal channels"),
    Case("videos_folder_missing", "videos", "no Videos/ folder", "train_weak", b_videos_folder_missing, E,
         "Videos folder not found", "error naming the folder"),
    Case("predict_broken_video", "videos", "predict.py on a folder with one non-video .avi", "predict",
         b_predict_broken_video, S, "videos that could not be decoded (1): broken",
         "other videos predicted; the failure counted and listed"),
    Case("predict_all_broken", "videos", "predict.py on a folder whose only video is broken", "predict",
         b_predict_all_broken, E, "no video could be predicted", "error listing the failures"),
    # checkpoints
    Case("ckpt_runs_code", "checkpoints", "a checkpoint whose unpickling would run code", "predict", b_ckpt_runs_code, E,
         "which is not plain data", "refused before anything in it runs (--trust_checkpoint to opt in)"),
    Case("ckpt_other_task_predict", "checkpoints", "predict.py given a temporal-masking (SSL) checkpoint", "predict",
         b_ckpt_other_task_predict, E, "is a temporal_masking checkpoint", "error saying which task and what to do"),
    Case("ckpt_other_task_resume", "checkpoints", "train_weak.py --resume an SSL run's last.ckpt", "train_weak",
         b_ckpt_other_task_resume, E, "is a temporal_masking checkpoint", "error naming the checkpoint's task"),
    Case("ckpt_other_task_resume_flag", "checkpoints", "train_weak.py --resume an SSL checkpoint inside a weak run",
         "train_weak", b_ckpt_other_task_resume_explicit, E, "is a temporal_masking checkpoint",
         "error naming the checkpoint's task"),
    Case("ckpt_other_encoder_transfer", "checkpoints", "--checkpoint of a 3d_unet_tiny given to --encoder si_tiny", "train_weak",
         b_ckpt_other_encoder_transfer, E, "no tensor matches this network", "error suggesting --encoder/--width"),
    Case("ckpt_other_encoder_resume", "checkpoints", "--resume with a different --encoder", "train_weak",
         b_ckpt_other_encoder_resume, E, "was trained with --encoder 3d_unet_tiny", "error naming both encoders"),
    Case("ckpt_corrupt_predict", "checkpoints", "random bytes as --checkpoint (predict.py)", "predict",
         b_ckpt_corrupt_predict, E, "not a readable PyTorch checkpoint", "error naming the file"),
    Case("ckpt_truncated_transfer", "checkpoints", "half of a real checkpoint as --checkpoint (train_weak.py)",
         "train_weak", b_ckpt_truncated_transfer, E, "not a readable PyTorch checkpoint", "error naming the file"),
    Case("ckpt_corrupt_resume", "checkpoints", "corrupted last.ckpt given to --resume", "train_weak",
         b_ckpt_corrupt_resume, E, "--resume", "error naming the flag and file"),
    Case("ckpt_empty_predict", "checkpoints", "0-byte checkpoint", "predict", b_ckpt_empty_predict, E,
         "file is empty", "error naming the file"),
    Case("ckpt_bare_state_dict", "checkpoints", "a bare state_dict (no task, no hyperparameters)", "predict",
         b_ckpt_bare_state_dict, E, "not a unilvseg training checkpoint", "error naming the file"),
    Case("ckpt_nan_weights", "checkpoints", "checkpoint whose weights contain NaN", "predict", b_ckpt_nan_weights, E,
         "non-finite", "error naming the tensor"),
    # prediction folders
    Case("pred_png_wrong_size", "prediction folder", "a traced-frame PNG of 64x64 for a 112x112 video", "evaluate",
         b_pred_png_wrong_size, E, "is 64x64, video is 112x112", "error listing the video (or --allow_missing)"),
    Case("pred_png_wrong_size_allowed", "prediction folder", "same, with --allow_missing", "evaluate",
         b_pred_png_wrong_size_allowed, S, "", "video skipped and counted in summary.json"),
    Case("pred_folder_empty", "prediction folder", "empty --prediction_dir", "evaluate", b_pred_folder_empty, E,
         "prediction", "error naming the folder"),
    Case("pred_folder_missing", "prediction folder", "--prediction_dir that does not exist", "evaluate",
         b_pred_folder_missing, E, "no-such-folder", "error naming the folder"),
    Case("pred_npz_corrupt", "prediction folder", "truncated masks/*.npz and no PNGs", "evaluate", b_pred_npz_corrupt,
         E, ".npz", "error naming the file"),
    Case("predict_save_dir_is_file", "prediction folder", "predict.py --save_dir is an existing file", "predict",
         b_predict_save_dir_is_file, E, "--save_dir", "error naming the flag"),
    Case("evaluate_output_dir_is_file", "prediction folder", "evaluate_bootstrap.py --output_dir is an existing file",
         "evaluate", b_evaluate_output_dir_is_file, E, "--output_dir", "error naming the flag"),
    # flags
    Case("run_dir_is_file", "flags", "--run_dir is an existing file", "train_weak", b_run_dir_is_file, E,
         "--run_dir", "error naming the flag"),
    Case("cache_dir_is_file", "flags", "--cache_dir (or UNILVSEG_CACHE) is an existing file", "train_weak", b_cache_dir_is_file, E,
         "cannot be written", "error naming the folder and what to do (another folder, or --cache_dir null)"),
    Case("mask_ratio_0", "flags", "--mask_ratio 0", "train_ssl", _flags("--mask_ratio", "0"), E, "--mask_ratio",
         "error: must be strictly between 0 and 1"),
    Case("mask_ratio_1", "flags", "--mask_ratio 1", "train_ssl", _flags("--mask_ratio", "1"), E, "--mask_ratio",
         "error: must be strictly between 0 and 1"),
    Case("frames_not_multiple_16", "flags", "--frames 20 with a 3D U-Net", "train_weak", _flags("--frames", "20"), E,
         "--frames 20", "error giving valid values"),
    Case("super_image_non_square", "flags", "--frames 12 with a super-image encoder", "train_weak",
         _flags("--encoder", "si_tiny", "--frames", "12"), E, "not a perfect square", "error giving valid values"),
    Case("batch_size_0", "flags", "--batch_size 0", "train_weak", _flags("--batch_size", "0"), E,
         "--batch_size must be >= 1", "error"),
    Case("epochs_0", "flags", "--epochs 0", "train_weak", _flags("--epochs", "0"), E, "--epochs must be >= 1", "error"),
    Case("lr_negative", "flags", "--lr -0.1", "train_weak", _flags("--lr", "-0.1"), E, "--lr must be positive", "error"),
    Case("num_workers_negative", "flags", "--num_workers -1", "train_weak", _flags("--num_workers", "-1"), E,
         "--num_workers must be >= 0", "error"),
    Case("frames_not_a_number", "flags", "--frames sixteen", "train_weak", _flags("--frames", "sixteen"), E,
         "frames", "argument error naming the flag"),
    Case("data_path_is_file", "flags", "--data_path is a file", "train_weak", b_data_path_file, E, "is a file",
         "error naming the path"),
    Case("data_path_missing", "flags", "--data_path does not exist", "train_weak", b_data_path_missing, E,
         "does not exist", "error naming the path"),
    Case("predict_batch_size_0", "flags", "predict.py --batch_size 0", "predict",
         lambda env: predict(env, "--data_path", env.phantom, "--batch_size", "0"), E, "--batch_size must be >= 1",
         "error"),
    Case("evaluate_samples_0", "flags", "evaluate_bootstrap.py --samples 0", "evaluate",
         lambda env: evaluate(env, None, None, "--samples", "0"), E, "--samples 0", "error"),
]

COMMANDS = {
    "train_weak": "train_weak.py",
    "train_ssl": "train_ssl.py",
    "predict": "predict.py",
    "evaluate": "evaluate_bootstrap.py",
}


def markdown() -> str:
    """The docs table (docs/reliability.md): case -> behaviour, grouped by area, generated from ``CASES``."""
    lines = [
        "Generated by `python -m tests.hostile_cases --docs` from the table that "
        "`tests/test_hostile.py` runs (each case through the real command, tiny settings).",
        "",
        "* **error**: exit status 2, one `error: ...` line on stderr naming the culprit, no traceback, "
        "no output folder left behind.",
        "* **skip**: the run completes; the bad video is counted and logged "
        "(`skipped N video(s) (<reason>)`, or `skipped_videos` in `metrics.csv` when it fails to decode "
        "during training, also inside DataLoader workers).",
        "* **works**: unusual but valid input, read correctly.",
        "",
        "No case leaves a `.tmp-*` file or a half-written output.",
        "",
        "| area | case | command | input | outcome | behaviour | message / log contains |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        expect = f"`{case.expect}`" if case.expect else ""
        lines.append(
            f"| {case.area} | `{case.id}` | {COMMANDS[case.command]} | {case.description.replace('|', '/')} "
            f"| {case.outcome} | {case.behaviour} | {expect} |"
        )
    return "\n".join(lines) + "\n"


# The page that holds the generated table (it was README.md before the docs site; ``README`` is
# kept as the old name of this constant).
DOCS = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
README = DOCS
README_START, README_END = "<!-- hostile-inputs: generated -->\n", "<!-- /hostile-inputs -->\n"


def readme_section(text: str) -> str:
    """The generated table inside docs/reliability.md (between the two markers)."""
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    return text[start:end]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs table")
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true",
                        help="rewrite the table inside docs/reliability.md (--readme: the old name)")
    args = parser.parse_args(argv)
    if args.docs:
        from unilvseg.io import write_text

        text = DOCS.read_text()
        write_text(text.replace(README_START + readme_section(text), README_START + markdown()), DOCS)
    elif args.markdown:
        print(markdown(), end="")
    else:
        for case in CASES:
            print(f"{case.id:32s} {case.outcome:6s} {case.expect}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
