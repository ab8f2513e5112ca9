"""What can stop a run besides a bug, and the exit code each one gets (docs/reliability.md lists them).

Each error here is the user's situation, not a defect: a recipe, data, a checkpoint or the run directory. The
CLI prints its message as one line (``acl-dist: error: ...``) and exits with its code, never a traceback. A
bug is anything else, and keeps its traceback.

| code | error | what it is about |
| --- | --- | --- |
| 1 | TrainingError | training cannot go on (non-finite losses in a row, an impossible device) |
| 2 | ConfigError | the recipe or the command line |
| 3 | DataError | the data: unreadable shards or samples under ``data.corrupt: raise``, no usable data |
| 4 | CheckpointError | a checkpoint that is unreadable, unsafe to load (it would run code) or of another recipe |
| 5 | RunDirectoryBusy | another live process is training the same run directory |
| 6 | RunWriteError | the run directory could not be written (disk full, quota); the last checkpoint is intact |
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message says everything a user needs: printed as one line, no traceback."""

    exit_code = 1


class TrainingError(UserFacingError, RuntimeError):
    """Training cannot go on (e.g. K non-finite losses in a row); the message says why."""

    exit_code = 1


class ConfigError(UserFacingError, ValueError):
    """A recipe problem, always naming the key path it is about."""

    exit_code = 2

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class DataError(UserFacingError, RuntimeError):
    """The data cannot be read as the recipe asks; the message names the shard, the key and what is wrong."""

    exit_code = 3


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint that cannot be used: unreadable, unsafe to unpickle, or written by another recipe."""

    exit_code = 4


class RunDirectoryBusy(UserFacingError, RuntimeError):
    """Another live process holds the run directory's lock (e.g. a stale SLURM job overlapping its requeue)."""

    exit_code = 5


class RunWriteError(UserFacingError, OSError):
    """Writing into the run directory failed (disk full, quota, read-only); the last complete checkpoint is
    untouched, so ``run.resume: auto`` continues from it once there is room."""

    exit_code = 6
