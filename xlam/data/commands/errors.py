"""The error a subcommand raises for a user's mistake.

Kept in the commands package so that commands need not import the CLI that loads them.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""
