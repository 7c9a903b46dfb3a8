"""Exceptions that carry a message a person can act on.

Scripts catch :class:`UserError` at the top level and print ``error: <message>`` with exit
status 2 instead of a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in flags, files or data that the user can fix; the message names the culprit."""


class DataError(UserError):
    """A dataset file (CSV, video, mask) is missing or malformed."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


class CacheError(UserError):
    """The decoded-frame cache cannot be written (full disk, not a folder, no permission).

    Not a :class:`DataError`: a video that fails is skipped, a cache that fails stops the run.
    """
