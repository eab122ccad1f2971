"""Verifiable synthetic agent data (APIGen-style): executable tools over domains, task
templates, the three checks (format, execution, semantic), environments for eval and RL.

Importing :mod:`xlam.synth.domains` registers every domain and template.
"""
