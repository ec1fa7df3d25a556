"""Nearest neighbours of embeddings by cosine similarity, mined in chunks of rows.

One chunk of queries against all N embeddings at a time, so memory is O(chunk x N), never
N x N: 50,000 embeddings in chunks of 1,024 hold about 200 MB of similarities at once.
"""

from __future__ import annotations

import torch

__all__ = ["nearest_neighbours"]


def nearest_neighbours(embeddings: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """The indices int64 [N, k] of each embedding's ``k`` most cosine-similar others (itself
    excluded), most similar first, for float embeddings [N, D] on any device (computed there,
    in float32)."""
    n = embeddings.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k = {k} neighbours need between 2 and k + 1 embeddings, got {n}")
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    found = torch.empty((n, k), dtype=torch.int64, device=embeddings.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        similarity = unit[start:stop] @ unit.T
        rows = torch.arange(stop - start, device=embeddings.device)
        similarity[rows, rows + start] = -torch.inf  # an embedding is not its own neighbour
        found[start:stop] = similarity.topk(k, dim=1).indices
    return found
