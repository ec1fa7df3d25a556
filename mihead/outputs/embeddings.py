"""RUN_DIR/embeddings.csv: a frozen encoder's embedding of every scored image, in lightly's
embedding CSV convention (``filenames``, ``embedding_0`` ..., ``labels``), so that the features
can be taken to other tools (lightly's own, a notebook, a vector index). Unlabelled images get
label 0, as lightly writes them."""

from __future__ import annotations

from pathlib import Path

from mihead import lightly_parts
from mihead.evaluate import Evaluation
from mihead.files import write_atomically
from mihead.run_directory import EMBEDDINGS_FILE

__all__ = ["write_embeddings"]


def write_embeddings(run_dir: Path, evaluation: Evaluation) -> Path | None:
    """RUN_DIR/embeddings.csv of ``evaluation``'s images, written atomically; None (nothing
    written) when the run's backbone is not a frozen encoder, or lightly is not installed (a
    warning says so)."""
    save_embeddings = lightly_parts.save_embeddings() if evaluation.embeddings is not None else None
    if evaluation.embeddings is None or save_embeddings is None:
        return None
    embeddings = evaluation.embeddings
    labels = [0] * len(embeddings) if evaluation.labels is None else evaluation.labels.tolist()
    return write_atomically(run_dir / EMBEDDINGS_FILE, lambda tmp: save_embeddings(str(tmp), embeddings, labels, list(evaluation.ids)))
