"""Station files shipped with the harness (data, not code)."""
