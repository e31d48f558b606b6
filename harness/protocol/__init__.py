"""Protocols: the YAML file model (``protocol_file``) and its expansion into a plan of actions (``plan``).

Each step kind's schema and expansion is a module of ``steps/`` (registry ``steps.KINDS``, contract
``steps.base.StepKind``/``LoopKind``); its execution is in the run layer (``harness/run/steps/``).
"""
