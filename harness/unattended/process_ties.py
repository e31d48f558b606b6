"""Platform code that ties a run process to the service that started it, so that a service that
dies (even by ``kill -9``) leaves no run going on unsupervised: the next start recovers the run.

Contract:
- ``end_with_parent()``: on Linux, a ``preexec_fn`` for ``subprocess.Popen`` that sets the child's
  parent-death signal to SIGTERM (the run then ends cleanly: safe state, files); elsewhere None.
- ``windows_end_with_parent(proc, out)``: on Windows, puts the started process into one Job Object
  of this service that is closed (ending its processes) when the service ends; elsewhere nothing.
  Best effort: a failure is said through ``out`` and the run goes on; never raises.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def end_with_parent() -> Callable[[], None] | None:
    """Linux: the run process gets SIGTERM (and ends cleanly: safe state, files) if the service dies,
    even by kill -9, so no orphan run goes on unsupervised. Elsewhere: nothing (None)."""
    if not sys.platform.startswith("linux"):
        return None

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return set_parent_death_signal


_JOB_HANDLE: Any = None


def windows_end_with_parent(proc: subprocess.Popen, out: Callable[[str], None]) -> None:
    """Windows: put the run process into a Job Object that is closed when the service ends (also
    when it is killed), which ends the run process too; the next start recovers the interrupted run.
    Without it, a killed service would leave an unsupervised run behind. Best effort: a failure is
    said and the run goes on."""
    global _JOB_HANDLE
    if sys.platform != "win32":
        return
    try:
        from ctypes import wintypes  # Windows only: wintypes cannot be imported elsewhere

        class _Basic(ctypes.Structure):
            _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                        ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
                        ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD), ("SchedulingClass", wintypes.DWORD)]

        class _Io(ctypes.Structure):
            _fields_ = [(name, ctypes.c_uint64) for name in ("ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                                                             "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

        class _Extended(ctypes.Structure):
            _fields_ = [("BasicLimitInformation", _Basic), ("IoInfo", _Io), ("ProcessMemoryLimit", ctypes.c_size_t),
                        ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateJobObjectW.restype = wintypes.HANDLE
        if _JOB_HANDLE is None:
            job = kernel32.CreateJobObjectW(None, None)
            info = _Extended()
            info.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            if not job or not kernel32.SetInformationJobObject(job, 9, ctypes.byref(info), ctypes.sizeof(info)):  # JobObjectExtendedLimitInformation
                raise OSError(ctypes.get_last_error(), "CreateJobObject/SetInformationJobObject failed")
            _JOB_HANDLE = job
        if not kernel32.AssignProcessToJobObject(_JOB_HANDLE, wintypes.HANDLE(int(proc._handle))):
            raise OSError(ctypes.get_last_error(), "AssignProcessToJobObject failed")
    except Exception as exc:  # the run goes on; only the clean-up on a killed service is lost
        out(f"the run process is not tied to the service ({type(exc).__name__}: {exc}); if the service is killed, the run goes on alone")
