"""The one exception type for mistakes a user can make and fix.

The CLI prints its message as a single line and exits non-zero, without a traceback.
Messages say what was wrong and what to do about it.
"""


class UserError(Exception):
    """Bad input: unknown env, wrong shapes, corrupt files, impossible configs, ..."""
