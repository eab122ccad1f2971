"""The label of a token the loss ignores (PyTorch's ``cross_entropy`` default).

Its own module so that the loss, collation and metrics need not import the renderer.
"""

IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX"]
