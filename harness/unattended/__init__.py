"""Unattended operation: schedule files, the scheduler service, notifications.

- ``schedule_file``: the schedule file (jobs, due times, preconditions, retries, notify).
- ``scheduler``: the service loop (``Scheduler``), given a ``run_launcher.RunLauncher``.
- ``schedule_state``: what the loop persists (``state.json``, ``outcomes.jsonl``).
- ``run_launcher``: run processes, recovery, a station's safe state (``ProcessLauncher``).
- ``process_ties``: the platform code that ends a run process with its service.
- ``recover_and_record``: recover then record, used by the service and the command line.
- ``messages``, ``notify``: what is said, and how it is sent.
"""
