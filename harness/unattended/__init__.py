"""Unattended operation: schedule files, the scheduler service, notifications."""
