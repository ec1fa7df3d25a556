"""Pseudo-graphs and pseudo-labels from cluster probabilities, shared by objectives.

Following DCCM (Wu et al., ICCV 2019, section 3.1 and 3.2), the prediction vectors z_i (rows
of a softmax output) of a batch give the cosine similarity S_ij = z_i . z_j / (|z_i| |z_j|),
the pseudo-graph W_ij = 1 if S_ij >= thres_1 else 0 (eq. 2) and the pseudo-label
y_i = argmax_k z_ik, kept where p_i = max_k z_ik >= thres_2 (eq. 7 and 8).

The "local robustness" of section 3.3 supervises transformed views with the graph and labels
of the original one (eq. 12). :func:`reference_probs` gives, for probabilities [..., V, B, K],
the (detached) probabilities that each view's targets come from: view 0 for every view, or each
view itself; :func:`combine_views` sums per-view losses the way eq. 15 does
(L_hat = L + L': the original view's term plus the transformed views' mean).
"""

from __future__ import annotations

import torch

__all__ = ["cosine_similarity", "pseudo_graph", "pseudo_labels", "reference_probs", "combine_views"]


def cosine_similarity(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """S = z z^T / (|z| |z|^T) for rows [..., B, K] -> [..., B, B], in float32."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        unit = z / z.norm(dim=-1, keepdim=True).clamp_min(eps)
        return unit @ unit.transpose(-1, -2)


def pseudo_graph(z: torch.Tensor, threshold: float) -> torch.Tensor:
    """The pseudo-graph W (eq. 2), float 0/1 [..., B, B], of rows [..., B, K]; no gradient."""
    with torch.no_grad():
        return (cosine_similarity(z) >= threshold).float()


def pseudo_labels(z: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labels y (eq. 7), int64 [..., B], and their confidence mask V (eq. 8), float 0/1
    [..., B], of rows [..., B, K]; no gradient."""
    with torch.no_grad():
        p, y = z.float().max(-1)
        return y, (p >= threshold).float()


def reference_probs(probs: torch.Tensor, from_original: bool) -> torch.Tensor:
    """Detached probabilities whose graph/labels supervise each view, for [..., V, B, K].

    ``from_original``: view 0 (the original image, see ``augment.original_view``) for every
    view; otherwise each view supervises itself.
    """
    ref = probs.detach()
    if from_original:
        ref = ref[..., :1, :, :].expand_as(ref)
    return ref


def combine_views(per_view: torch.Tensor, from_original: bool) -> torch.Tensor:
    """One loss from per-view losses [..., V] -> [...].

    ``from_original``: eq. 15's L + L', the original view's own term plus the mean over the
    transformed views 1..V-1; otherwise the mean over all views.
    """
    if from_original:
        return per_view[..., 0] + per_view[..., 1:].mean(-1)
    return per_view.mean(-1)
