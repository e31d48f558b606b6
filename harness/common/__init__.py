"""Shared foundations with no dependency on the rest of the harness: errors, units, atomic and
confined file writes, YAML with line numbers and the kind of a YAML file (protocol, station,
schedule), the disk-full guard, kill points for crash tests."""
