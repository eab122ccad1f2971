"""The critic: an LLM judge scores each trajectory 1-5 with reasons (``xlam-data critique``).

:mod:`xlam.critic.rubric` (the prompt and reading the answer), :mod:`xlam.critic.cache`
(judgements by trajectory, judge and prompt), :mod:`xlam.critic.run` (the run). The verdict
a trajectory carries, and filtering by it, are data contracts: :mod:`xlam.data.scores`.
See ``docs/critic.md``.
"""
