"""The command line: ``microscope-qc`` and its sub-commands.

``commands`` is the entry point (``main``, ``run``, ``build_parser``); the commands live by group in
``run_commands``, ``station_commands``, ``store_commands`` and ``schedule_cli``; ``cli_types`` and
``shared`` hold argument types and what the groups share.
"""
