"""The ``dccm_label`` objective: pseudo-label supervision (DCCM, eq. 7 to 9 and 12).

Wu et al., "Deep Comprehensive Correlation Mining for Image Clustering", ICCV 2019, section
3.2: "we can formulate our pseudo-label as y_i = argmax_k [f(x_i)]_k" (eq. 7); "we also set a
large threshold thres_2 for probability p_i to select highly-confident pseudo-label for
supervision: V_i = 1 if p_i >= thres_2, 0 otherwise" (eq. 8); "L_PL(theta) = sum_{x_i} V_i .
l_l(f(x_i), y_i)" (eq. 9), with l_l "the cross-entropy loss". Section 3.3: "given an image x_i
with highly-confident pseudo-label y_i, we also force x'_i has same pseudo-label" (eq. 12).
The paper weights this term by alpha = 5 (eq. 10 and 15): set it as the recipe's ``weight``.

How it applies to mihead's outputs:

* each main head of ``ModelOutputs.probs`` [H, V, B, K] gets its own labels and loss; the term
  is the mean over main heads (overclustering heads are not used);
* within a view, the loss is sum_i V_i (-log z_{i, y_i}) / B: the sum of eq. 9 over the batch
  size, so that unconfident samples add nothing and the term grows as more samples become
  confident (the progressive training the paper describes);
* ``from_original = false``: each view's labels come from its own (detached) predictions.
  ``from_original = true``: the labels and mask of view 0 supervise every view, and the term is
  eq. 15's L_PL + L'_PL (view 0's loss plus the mean over views 1..V-1); set
  ``augment.original_view = true`` so that view 0 is the untransformed image;
* ``loss = "cross_entropy"`` (default) is the paper's l_l. ``loss = "bce"`` is the authors'
  released code (github.com/Cory-M/DCCM, ``utils/util.py`` ``WeightedBCE``): the binary
  cross-entropy of each of the K probabilities against the one-hot label, averaged over the K
  clusters, -(1/K) sum_k [y_ik log z_ik + (1 - y_ik) log(1 - z_ik)], in place of -log z_{i, y_i};
  it is about K/2 times smaller at the same weight (docs/dccm.md, "Paper and released code").
"""

from __future__ import annotations

import dataclasses

import torch

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param
from mihead.mi import EPS
from mihead.pseudo import combine_views, pseudo_labels, reference_probs


@dataclasses.dataclass(frozen=True)
class DCCMLabelParams(ObjectiveParams):
    thres2: float = param(0.9, "largest probability at or above which a pseudo-label is used (thres_2)", ge=0, le=1)
    from_original: bool = param(
        False,
        "take the pseudo-labels from view 0 (the untransformed image with augment.original_view) "
        "and supervise every view with them (eq. 12); false = each view supervises itself",
    )
    loss: str = param(
        "cross_entropy",
        "l_l: cross_entropy = -log z of the label (the paper); bce = binary cross-entropy of every "
        "cluster's probability against the one-hot label, averaged over clusters (the authors' code)",
        choices=("cross_entropy", "bce"),
    )


def confident_cross_entropy(z: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i mask_i * -log z[i, labels_i] / B for probabilities [..., B, K] -> [...]."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        picked = z.float().gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return -(mask * picked.clamp_min(EPS).log()).sum(-1) / z.shape[-2]


def confident_binary_cross_entropy(z: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i mask_i * mean_k BCE(z[i, k], onehot(labels_i)[k]) / B for probabilities [..., B, K] -> [...]."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        onehot = torch.nn.functional.one_hot(labels, z.shape[-1]).to(z.dtype)
        bce = -(onehot * z.clamp_min(EPS).log() + (1 - onehot) * (1 - z).clamp_min(EPS).log()).mean(-1)
        return (mask * bce).sum(-1) / z.shape[-2]


_LOSSES = {"cross_entropy": confident_cross_entropy, "bce": confident_binary_cross_entropy}


class DCCMLabel(Objective[DCCMLabelParams]):
    """Cross-entropy (or the released code's binary cross-entropy) of the prediction vectors
    against their confident argmax pseudo-labels, averaged over main heads (see the module
    docstring)."""

    name = "dccm_label"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        probs = outputs.probs
        labels, mask = pseudo_labels(reference_probs(probs, self.params.from_original), self.params.thres2)
        per_view = _LOSSES[self.params.loss](probs, labels, mask)  # [H, V]
        return combine_views(per_view, self.params.from_original).mean()


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [DCCMLabel]
