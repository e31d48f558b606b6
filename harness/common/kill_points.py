"""Named points where a crash test can kill the process on purpose (for crash tests only).

A no-op unless the environment variable ``MICROSCOPE_QC_TEST_KILL_AT`` is set. Its value is one or
more ``point[@N][:SIGNAL]`` entries separated by commas; when the process reaches a named point (with
``@N``: for the N-th time), it sends
itself that signal (default ``KILL``: ``os.kill(os.getpid(), SIGKILL)``, as a power loss or
``kill -9`` would end it). ``STOP`` stops the process there (a test then does something, e.g. stops the
service, and sends ``SIGCONT``); ``TERM`` sends SIGTERM. Child processes inherit the variable, so a
point names the process that reaches it (a run, a ``recover``, the service).

Points (the kill-campaign script uses the same names):

- ``acquisition:started``: a run process, right after its journal's ``run_start`` (run.json ``running``);
- ``acquisition:reading``: a run process, each time a power reading is in its series CSV (``@21``: the 21st);
- ``acquisition:frame``: a run process, each time a frame's page and its frame-log row are written;
- ``finishing:start``: run.json ``finishing`` written (the acquisition's outcome is recorded), nothing else yet;
- ``finishing:after_results``: results.json, QC annotations and the report written;
- ``finishing:after_record``: the results store has the run;
- ``finishing:after_run_json``: run.json has its final status; the manifest is not yet written;
- ``finishing:done``: the manifest is written (a run process: before its outcome file);
- ``recovery:before_finishing``: ``recover`` repaired the files and wrote run.json ``finishing``;
- ``service:after_run``: the schedule service saw its run process end, before it recorded the outcome.

The finishing points are reached by whoever finishes: a run process, ``recover``, or the service's
automatic recovery.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "MICROSCOPE_QC_TEST_KILL_AT"
POINTS = ("acquisition:started", "acquisition:reading", "acquisition:frame", "finishing:start", "finishing:after_results", "finishing:after_record",
          "finishing:after_run_json", "finishing:done", "recovery:before_finishing", "service:after_run")


_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Send this process the signal the environment names for ``point`` (nothing if none)."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    _counts[point] = count = _counts.get(point, 0) + 1
    for entry in wanted.split(","):
        name, _, sig = entry.strip().rpartition(":") if entry.strip().count(":") >= 2 else (entry.strip(), "", "KILL")
        name, _, nth = name.partition("@")
        if name == point and (not nth or int(nth) == count):
            os.kill(os.getpid(), getattr(signal, f"SIG{sig.upper() or 'KILL'}"))
