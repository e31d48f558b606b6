"""Errors a user can cause or fix (bad files, missing hardware): shown as one clear message, never a
traceback."""


class UserError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""


class StationError(UserError):
    """The station could not be brought up (a device did not connect or initialize)."""
