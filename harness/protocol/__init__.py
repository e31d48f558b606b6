"""Protocols: the YAML file model and its expansion into a plan of actions."""
