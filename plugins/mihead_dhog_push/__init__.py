"""The ``dhog_push`` objective: DHOG's cross-head MI minimisation (eq. 2 and 4).

"DHOG: Deep Hierarchical Object Grouping" (anonymous ICLR 2021 submission),
section 3.1: "Let z_i, z_j denote the random probability vectors from two heads. We can
minimise the MI across heads: MI_head(c_i, c_j) = Tr(E[z_i z_j^T]^T log(E[z_i z_j^T]))
- E[z_i^T] log(E[z_i]) - E[z_j^T] log(E[z_j])" (eq. 2), where "z_i and z_j are each computed
from the same data augmentation", and section 3.2: "The quantity used to 'push' heads apart
is Equation 2 normalised per head: MI_push = sum_{i=1}^{k} (sum_{j<i} MI_head(c_i, c_j)) / i"
(eq. 4), "where each cross-head MI term is scaled by the head index, i". The objective is
"arg max MI_pull - alpha MI_push" (eq. 5), so this term returns +MI_push, to be minimised
with weight alpha (0.05 in the paper).

Hierarchy (gradient stopping): "The hierarchical arrangement is induced by only updating
head-specific weights according to comparisons made with earlier heads. [...] when computing
the MI between z_{i=6} and those using z_{i!=6}, gradient back-propagation is allowed when
i < 6 but not when i > 6." So in each pair (i, j < i) the earlier head's probabilities are
detached: an earlier head is never pushed by a later one, and the first head gets no push
gradient at all.

``reach``: how far down head i's path its push gradient goes. ``head_specific`` (the default):
only into the weights that belong to head i, its head module and the blocks the backbone
declares as its attachment point's own (for ``dhog_resnet18``, its copy of block 4), as the
paper says: "There are shared model weights (ResNet blocks 1, 2, and 3) and head-specific
weights (the MLP layers and ResNet blocks 4 to 8)" and the hierarchy "is induced by only
updating head-specific weights"; the shared blocks are trained by the pull alone.
``whole_path``: down the whole path, shared blocks included ("Any branch of the DHOG
architecture (input to any z_i) can be regarded as a single neural network"; Figure 1 draws
the stops on the gradients with respect to the other head's z). mihead's engine applies it
(mihead/gradients.py); a hand-written loop that calls ``backward()`` on this term itself gets
``whole_path``. docs/dhog.md compares the two.

Joint tables are not symmetrised: unlike two views of one head, (c_i, c_j) are two different
variables, and (P + P^T)/2 would mix their marginals. MI(P) = MI(P^T), so the order of the
pair does not change the value. Only the main heads are pushed: "We repeat each head with an
overclustering head that does not play a part in the cross-head MI minimisation."

``scale``: eq. 4 divides head i's summed MI by i (``head_index``, the default), while the text
says the scaling "directly tracks the number of comparisons made for each head", which is
i - 1; ``comparisons`` divides by i - 1, so that each head's push is its mean MI with the
earlier heads (the first head, with none, contributes nothing either way).
"""

from __future__ import annotations

import dataclasses

import torch

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param
from mihead.mi import joint_table, mutual_information


@dataclasses.dataclass(frozen=True)
class DHOGPushParams(ObjectiveParams):
    scale: str = param(
        "head_index",
        "divide head i's summed cross-head MI by: head_index = i (eq. 4), comparisons = i - 1 (its mean over earlier heads)",
        choices=("head_index", "comparisons"),
    )
    reach: str = param(
        "head_specific",
        "where head i's push gradient goes: head_specific = only its own weights (its head and "
        "the backbone blocks its attachment point owns, e.g. its copy of block 4), the shared "
        "blocks left to the pull (the paper's text; 1.4x the step time of dhog_resnet18); "
        "whole_path = down its whole path, shared blocks included",
        choices=("head_specific", "whole_path"),
    )


def cross_head_mi(probs: torch.Tensor) -> torch.Tensor:
    """MI between every head i and every earlier head j < i on the same view, the earlier
    head detached, for probs [H, V, B, K] -> [H, H, V] (zero on and above the diagonal)."""
    heads = probs.shape[0]
    later, earlier = torch.tril_indices(heads, heads, offset=-1, device=probs.device)
    # index_select, not probs[later]: its backward adds the repeated heads in a fixed order (mihead/op_audit.py)
    mi = mutual_information(joint_table(probs.index_select(0, later), probs[earlier].detach()))  # [P, V]
    table = mi.new_zeros(heads, heads, mi.shape[-1])
    return table.index_put((later, earlier), mi)


def push(probs: torch.Tensor, scale: str = "head_index") -> torch.Tensor:
    """MI_push of eq. 4 for probs [H, V, B, K], averaged over views: head i (from 1) sums
    its MI with heads 1..i-1, divided by i (or by i - 1 with ``scale = "comparisons"``)."""
    mi = cross_head_mi(probs)  # [H, H, V]
    index = torch.arange(1, probs.shape[0] + 1, device=probs.device, dtype=mi.dtype)
    divisor = index if scale == "head_index" else (index - 1).clamp_min(1)
    return (mi.sum(1) / divisor[:, None]).sum(0).mean()


class DHOGPush(Objective[DHOGPushParams]):
    """+MI_push over the main heads in hierarchy order (minimised: pushes heads apart)."""

    name = "dhog_push"

    @classmethod
    def head_specific(cls, params: ObjectiveParams) -> bool:
        return isinstance(params, DHOGPushParams) and params.reach == "head_specific"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        return push(outputs.probs, self.params.scale)


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [DHOGPush]
