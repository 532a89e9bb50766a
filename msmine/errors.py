"""The one exception type for errors a user can cause (bad path, bad value, server down, ...).

The CLI turns a :class:`UserError` into one clear line on stderr and exit status 1; any other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""
