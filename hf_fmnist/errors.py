"""The one exception type that means "the user can fix this".

The CLI prints these as a single ``error: ...`` line and exits with status 2; anything else is a bug and keeps
its traceback.
"""


class HfFmnistError(Exception):
    """A problem with the user's input or environment; the message says what, where, and how to fix it."""
