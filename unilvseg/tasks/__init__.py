"""One LightningModule per training scheme, and loading any of them back from a checkpoint."""

from unilvseg.tasks.base import ClipTask
from unilvseg.tasks.ssl import TemporalMaskingTask
from unilvseg.tasks.weak import WeakSegmentationTask

TASKS: dict[str, type[ClipTask]] = {
    TemporalMaskingTask.task_name: TemporalMaskingTask,
    WeakSegmentationTask.task_name: WeakSegmentationTask,
}


def register_task(cls: type[ClipTask]) -> type[ClipTask]:
    TASKS[cls.task_name] = cls
    return cls


__all__ = ["ClipTask", "TemporalMaskingTask", "WeakSegmentationTask", "TASKS", "register_task"]

# Registered last: these modules import register_task from this (by then initialised) package.
from unilvseg.tasks.anatomical import AnatomicalPositionTask  # noqa: E402
from unilvseg.tasks.label_free import LabelFreeTask  # noqa: E402

__all__ += ["AnatomicalPositionTask", "LabelFreeTask"]
