"""Errors a user can cause or fix (bad files, missing hardware): shown as one clear message, never a
traceback."""


# exit codes of the command line, shared by the run process and the scheduler that reads them
EXIT_USER, EXIT_DEVICE, EXIT_RUN_FAILED, EXIT_PRECONDITION, EXIT_INTERRUPTED = 2, 3, 4, 5, 130
EXIT_ANALYSIS_FAILED = 6  # the data are complete and kept; the analysis crashed or refused its input
EXIT_UNSAFE = 7  # the safe state was NOT confirmed: a laser may still be on (the most serious ending)


class UserError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""


class StationError(UserError):
    """The station could not be brought up (a device did not connect or initialize)."""


class BadInput(ValueError):
    """An analysis refuses its input (not finite, too few points, no variance, no signal); ``str()``
    is the reason, said in results.json and the report instead of a crash."""
