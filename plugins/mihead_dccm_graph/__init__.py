"""The ``dccm_graph`` objective: pseudo-graph supervision (DCCM, eq. 2, 3 and 12).

Wu et al., "Deep Comprehensive Correlation Mining for Image Clustering", ICCV 2019, section
3.1: "we can construct the pseudo-graph W by setting a large threshold thres_1: W_ij = 1 if
s_ij >= thres_1, 0 otherwise" (eq. 2), where s_ij is the cosine similarity of the prediction
vectors of samples i and j, and "L_PG(theta) = sum_{x_i, x_j} l_g(f(x_i), f(x_j); W_ij)"
(eq. 3) with l_g "the binary cross-entropy loss [8] regularizing the similarity" (DAC):
l_g = -W_ij log s_ij - (1 - W_ij) log(1 - s_ij). Section 3.3 (local robustness): "we also
investigate the correlation among the transformed samples x' with the highly-confident
pseudo-graph W computed on the original samples" (eq. 12).

How it applies to mihead's outputs:

* each main head (``ModelOutputs.probs`` [H, V, B, K]) gets its own graph and loss; the term
  is the mean over main heads (overclustering heads are not used);
* within a view, the loss is the mean of l_g over the B(B-1) ordered pairs i != j (the sum
  of eq. 3 divided by the pair count, so the weight does not depend on the batch size; the
  diagonal, where s_ii = W_ii = 1, is constant and left out);
* ``from_original = false``: every view is supervised by its own graph and the views' losses
  are averaged. ``from_original = true``: the graph of view 0 (detached) supervises every view,
  and the term is eq. 15's L_PG + L'_PG, view 0's loss plus the mean over views 1..V-1; set
  ``augment.original_view = true`` so that view 0 is the untransformed image.
"""

from __future__ import annotations

import dataclasses

import torch

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param
from mihead.pseudo import combine_views, cosine_similarity, pseudo_graph, reference_probs

EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class DCCMGraphParams(ObjectiveParams):
    thres1: float = param(0.95, "cosine similarity at or above which two samples are linked (thres_1)", ge=0, le=1)
    from_original: bool = param(
        False,
        "take the graph from view 0 (the untransformed image with augment.original_view) and "
        "supervise every view with it (eq. 12); false = each view supervises itself",
    )


def graph_bce(z: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between the cosine similarities of rows z [..., B, K] and a
    0/1 graph [..., B, B], over pairs i != j -> [...]."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        s = cosine_similarity(z).clamp(EPS, 1 - EPS)
        bce = -(graph * s.log() + (1 - graph) * (1 - s).log())
        b = z.shape[-2]
        off = 1 - torch.eye(b, device=z.device)
        return (bce * off).sum((-1, -2)) / (b * (b - 1))


class DCCMGraph(Objective[DCCMGraphParams]):
    """Binary cross-entropy between the similarity of the prediction vectors and the
    thresholded pseudo-graph, averaged over main heads (see the module docstring)."""

    name = "dccm_graph"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        probs = outputs.probs
        graph = pseudo_graph(reference_probs(probs, self.params.from_original), self.params.thres1)
        per_view = graph_bce(probs, graph)  # [H, V]
        return combine_views(per_view, self.params.from_original).mean()


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [DCCMGraph]
