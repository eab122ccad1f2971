"""Eval suites: what to ask a model and how to score it.

``bfcl`` (:mod:`xlam.eval.suites.bfcl`): BFCL v4 with its own data and checkers, in its own
environment. ``trajectories`` (:mod:`xlam.eval.suites.trajectories`): held-out unified
trajectories, every assistant turn given the gold history. Suites are instantiated from
``conf/suite/*.yaml`` by their ``_target_``; this package imports none of them, so each
pulls in only what it needs.
"""
