"""The ``dccm_triplet_mi`` objective: triplet mutual information between shallow and deep
features (DCCM, eq. 13 and 14; pair sampling V1 of Table 5).

Wu et al., "Deep Comprehensive Correlation Mining for Image Clustering", ICCV 2019, section
3.4: "we also convert the MI of two random variables (D and S) to the Jensen-Shannon divergence
(JSD) between samples coming from the joint distribution J and their product of marginals M":
"MI^(JSD)(D, S) = E_J[-sp(-T(d, s))] - E_M[sp(T(d, s))]" (eq. 13), "where d corresponds to the
deep layer features, s corresponds to the shallow layer features, T is a discriminator" and
sp(z) = log(1 + e^z). The triplet form (eq. 14) counts the pair of a sample's deep feature
with the shallow feature of a sample of the same pseudo-class as joint too: "For each sample,
we construct the positive pairs and negative pairs based on the pseudo-graph W".
Supplementary 6.5, strategy V1 ("nearest pos + random* neg", the best of Table 5): "for each
sample, we select its nearest sample from the minibatch to construct a positive pair", and
"we randomly take ... a negative sample that satisfies W_ij = 0 as a negative pair".
Implementation details: "For discriminator of mutual information estimation, we adopt the
network with three 1x1 convolutional layers, which is same to [20]" (Deep InfoMax), with the
shallow and deep features "concatenated as the input of discriminator".

What is computed, for each view v and anchor i of the batch (d = deep, s = shallow):

* joint pairs: (d_i, s_i), and (d_i, s_n) with n = argmax_{j != i} S_ij the nearest sample
  by cosine similarity of the predictions, kept only when W_in = 1 (a pseudo-graph edge);
* product-of-marginals pair: (d_i, s_m) with m drawn uniformly among the samples with
  W_im = 0 (none when i is linked to the whole batch);
* T is Deep InfoMax's local discriminator: d is copied to every location of the shallow map
  s [C_s, H, W], concatenated, and three 1x1 convolutions (ReLU between) score each location;
  every location is one sample of the expectations. The first convolution is applied to s and
  d separately and summed, which is the same linear map on the concatenation, done once per
  sample instead of once per pair;
* the term is -MI^(JSD), averaged over views. It lies in [0, inf): 2 log 2 when T cannot tell
  the pairs apart, towards 0 as T separates them. Its gradient trains the discriminator and,
  through s and d, the backbone.

The pseudo-graph is built from the (detached) predictions of one main head (``head``; -1 =
the last, deepest one). ``from_original = true`` takes it from view 0 for every view (the
untransformed image with ``augment.original_view = true``); otherwise each view uses its own.
Needs the backbone features ``shallow`` [N, C_s, H, W] and ``deep`` [N, C_d] (a deep map is
average-pooled to a vector, a shallow vector is taken as a 1x1 map).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveContext, ObjectiveParams, param
from mihead.errors import PluginError, RecipeError
from mihead.pseudo import cosine_similarity, reference_probs


@dataclasses.dataclass(frozen=True)
class DCCMTripletMIParams(ObjectiveParams):
    thres1: float = param(0.95, "cosine similarity at or above which two samples are linked (thres_1)", ge=0, le=1)
    hidden: int = param(512, "width of the discriminator's two hidden 1x1 convolutions (Deep InfoMax: 512)", ge=1)
    head: int = param(-1, "main head whose predictions build the pseudo-graph (-1 = the last)", ge=-1)
    from_original: bool = param(
        False, "take the pseudo-graph from view 0 for every view (with augment.original_view)"
    )


@dataclasses.dataclass
class Pairs:
    """For each anchor i (leading dims [..., B]): its nearest other sample ``nearest`` and
    whether that is a pseudo-graph edge, and a random non-neighbour ``negative`` and whether
    one exists."""

    nearest: torch.Tensor
    nearest_valid: torch.Tensor
    negative: torch.Tensor
    negative_valid: torch.Tensor


def select_pairs(z: torch.Tensor, threshold: float) -> Pairs:
    """Strategy V1 of DCCM's Table 5 for prediction rows z [..., B, K] (no gradient); the
    negatives are drawn with torch's global generator."""
    with torch.no_grad():
        s = cosine_similarity(z)
        graph = s >= threshold
        b = z.shape[-2]
        eye = torch.eye(b, dtype=torch.bool, device=z.device)
        nearest = s.masked_fill(eye, float("-inf")).argmax(-1)
        scores = torch.rand(s.shape, device=z.device).masked_fill(graph, -1.0)
        negative = scores.argmax(-1)

        def linked(idx: torch.Tensor) -> torch.Tensor:
            return graph.gather(-1, idx.unsqueeze(-1)).squeeze(-1)

        return Pairs(nearest, linked(nearest), negative, ~linked(negative))


class LocalDiscriminator(nn.Module):
    """T(d, s): three 1x1 convolutions on [s; d copied to every location] -> a score per
    location [..., H, W] (Deep InfoMax's concat-and-convolve local discriminator)."""

    def __init__(self, shallow: int, deep: int, hidden: int) -> None:
        super().__init__()
        self.shallow_in = nn.Conv2d(shallow, hidden, 1)
        self.deep_in = nn.Linear(deep, hidden, bias=False)
        self.rest = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))

    def embed(self, shallow: torch.Tensor, deep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's two halves: [N, hidden, H, W] of shallow maps [N, C_s, H, W] and
        [N, hidden] of deep vectors [N, C_d]."""
        return self.shallow_in(shallow), self.deep_in(deep)

    def score(self, shallow_embedded: torch.Tensor, deep_embedded: torch.Tensor) -> torch.Tensor:
        """Scores [N, H, W] of N pairs of embedded halves [N, hidden, H, W] and [N, hidden]."""
        return self.rest(shallow_embedded + deep_embedded[:, :, None, None]).squeeze(1)

    def forward(self, shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """Scores [N, H, W] of the pairs (shallow[n], deep[n])."""
        return self.score(*self.embed(shallow, deep))


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)


class DCCMTripletMI(Objective[DCCMTripletMIParams]):
    """Minus the JSD mutual information between deep and shallow features over own-sample and
    nearest-neighbour (joint) and non-neighbour (product) pairs (see the module docstring)."""

    name = "dccm_triplet_mi"
    requires: ClassVar[frozenset[str]] = frozenset({"shallow", "deep"})

    def __init__(self, params: DCCMTripletMIParams, context: ObjectiveContext) -> None:
        super().__init__(params, context)
        missing = sorted(self.requires - set(context.feature_channels))
        if missing:
            raise PluginError(
                f"objective {self.name!r} needs backbone features {', '.join(missing)}; the backbone "
                f"returned {', '.join(sorted(context.feature_channels)) or 'none'}"
            )
        if params.head >= context.heads:
            raise RecipeError(
                f"objective {self.name!r}: head = {params.head}, but the model has {context.heads} main heads"
            )
        channels = context.feature_channels
        self.discriminator = LocalDiscriminator(channels["shallow"], channels["deep"], params.hidden)

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        shallow, deep = outputs.features["shallow"], outputs.features["deep"]
        if deep.ndim > 3:
            deep = deep.flatten(3).mean(-1)
        if shallow.ndim == 3:
            shallow = shallow[..., None, None]
        v, b = deep.shape[:2]
        ref = reference_probs(outputs.probs[self.params.head], self.params.from_original)
        pairs = select_pairs(ref, self.params.thres1)  # each [V, B]

        s_emb, d_emb = self.discriminator.embed(shallow.flatten(0, 1), deep.flatten(0, 1))
        s_emb, d_emb = s_emb.unflatten(0, (v, b)), d_emb.unflatten(0, (v, b))
        anchors = torch.arange(b, device=deep.device).expand(v, b)
        partners = torch.cat([anchors, pairs.nearest, pairs.negative], 1)  # [V, 3B]
        rows = torch.arange(v, device=deep.device)[:, None] * b  # offsets of each view's samples
        # index_select, not s_emb[rows, partners]: its backward adds the repeated samples in a
        # fixed order (mihead/op_audit.py)
        scores = self.discriminator.score(
            s_emb.flatten(0, 1).index_select(0, (rows + partners).flatten()),
            d_emb.flatten(0, 1).index_select(0, (rows + anchors.repeat(1, 3)).flatten()),
        )
        scores = scores.float().unflatten(0, (v, 3 * b)).flatten(2)  # [V, 3B, H*W]
        joint = (-F.softplus(-scores[:, : 2 * b])).mean(-1)
        product = F.softplus(scores[:, 2 * b :]).mean(-1)
        joint_weights = torch.cat([torch.ones_like(anchors, dtype=joint.dtype), pairs.nearest_valid.to(joint.dtype)], 1)
        mi = _weighted_mean(joint, joint_weights) - _weighted_mean(product, pairs.negative_valid.to(product.dtype))
        return -mi.mean()


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [DCCMTripletMI]
