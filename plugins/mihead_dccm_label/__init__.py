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
  ``augment.original_view = true`` so that view 0 is the untransformed image.
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


def confident_cross_entropy(z: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i mask_i * -log z[i, labels_i] / B for probabilities [..., B, K] -> [...]."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        picked = z.float().gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return -(mask * picked.clamp_min(EPS).log()).sum(-1) / z.shape[-2]


class DCCMLabel(Objective):
    """Cross-entropy of the prediction vectors against their confident argmax pseudo-labels,
    averaged over main heads (see the module docstring)."""

    name = "dccm_label"
    Params = DCCMLabelParams
    params: DCCMLabelParams

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        probs = outputs.probs
        labels, mask = pseudo_labels(reference_probs(probs, self.params.from_original), self.params.thres2)
        per_view = confident_cross_entropy(probs, labels, mask)  # [H, V]
        return combine_views(per_view, self.params.from_original).mean()


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [DCCMLabel]
