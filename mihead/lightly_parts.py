"""The pieces of lightly that mihead uses, imported when first needed: its embedding CSV writer
(``lightly.utils.io.save_embeddings``) and its kNN classifier
(``lightly.utils.benchmarking.knn_predict``).

Importing lightly takes seconds (its benchmarking module loads Lightning), so only runs that
write embeddings.csv or score an encoder's features import it. A machine without lightly (it is
a declared dependency, but a GPU image may lack it) still trains and evaluates: what needs it
is left out with one warning line saying what and why.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text

from mihead.distributed import current

__all__ = ["knn_predict", "save_embeddings"]


@functools.cache
def _lightly(module: str, name: str, what: str) -> Callable[..., Any] | None:
    """``module.name`` of lightly, imported once; None, with one warning that ``what`` is left
    out, where lightly is not installed."""
    try:
        found: Callable[..., Any] = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        console = Console(stderr=True, quiet=not current().is_main)
        console.print(Text(f"mihead: warning: {what} left out: {exc} (pip install lightly)", style="yellow"), soft_wrap=True)
        return None
    return found


def save_embeddings() -> Callable[..., Any] | None:
    """lightly's embedding CSV writer, or None (with a warning) without lightly."""
    return _lightly("lightly.utils.io", "save_embeddings", "embeddings.csv")


def knn_predict() -> Callable[..., Any] | None:
    """lightly's weighted kNN classifier, or None (with a warning) without lightly."""
    return _lightly("lightly.utils.benchmarking", "knn_predict", "the encoder's kNN accuracy")
