"""Evaluation protocols: which images train the model, which fit the cluster-to-class mapping
and choose the reported head, and which are scored.

Published clustering numbers differ by protocol, so a recipe names its own (``eval.protocol``)
and summary.json records it:

* ``split`` (default): mapping, head and scores all from the evaluation split (``eval.split``,
  else the dataset's); the model trains on the training split.
* ``fit_on_train``: the mapping (Hungarian, per head) and the head (highest NMI(z, z'), or
  accuracy with ``eval.selection = "best"``) come from the training split; the evaluation
  split is scored with them. DHOG's: "Before assessment a labelling-to-class remapping was
  computed using the training data and the Hungarian method", "the head that maximises the
  normalised mutual information on the training data is chosen", results on the test set.
  When the training split has no labels (STL-10's unlabelled images), the head still comes
  from it and the mapping from the evaluation split, and the protocol's description says so.
* ``union``: the training and evaluation splits together train the model, fit the mapping,
  choose the head and are scored (CIFAR-10: all 60,000 images), as IIC and DCCM evaluate
  ("the training and validation images of each dataset are jointly utilized", DCCM 4.1).
  Each image's id is prefixed by its split (``test/123``), so ids stay unique.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mihead.contracts import ImageData
from mihead.errors import DataError

__all__ = ["PROTOCOLS", "Protocol", "resolve_protocol", "union_data"]

PROTOCOLS = ("split", "fit_on_train", "union")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A protocol resolved for a dataset's splits: the split names each role uses."""

    name: str
    trained: str
    fitted: str
    scored: str

    def describe(self, fit_labelled: bool = True) -> str:
        """The summary.json ``protocol`` string: which split fitted the mapping and chose the
        head, and which was scored."""
        if self.fitted != self.scored and not fit_labelled:
            return f"{self.name}: head chosen on {self.fitted} (unlabelled), mapping fitted on {self.scored}, scored on {self.scored}; trained on {self.trained}"
        return f"{self.name}: mapping fitted and head chosen on {self.fitted}, scored on {self.scored}; trained on {self.trained}"

    def splits(self) -> dict[str, str]:
        """The roles' split names, for summary.json."""
        return {"trained": self.trained, "fitted": self.fitted, "scored": self.scored}


def resolve_protocol(name: str, train_split: str, eval_split: str) -> Protocol:
    """``name`` (one of :data:`PROTOCOLS`) for a run training on ``train_split`` and
    evaluating ``eval_split``; a union of one split with itself is that split."""
    if name == "union":
        joined = train_split if train_split == eval_split else f"{train_split}+{eval_split}"
        return Protocol(name, joined, joined, joined)
    if name == "fit_on_train":
        return Protocol(name, train_split, train_split, eval_split)
    if name == "split":
        return Protocol(name, train_split, eval_split, eval_split)
    raise ValueError(f"unknown protocol {name!r}")


def union_data(parts: Sequence[tuple[str, ImageData]]) -> ImageData:
    """Several splits as one: images and labels concatenated in order (labels None when any
    split has none), each id prefixed by its split's name. The splits must share an image
    shape and class names."""
    (first_name, first), rest = parts[0], parts[1:]
    for name, data in rest:
        if data.images.shape[1:] != first.images.shape[1:]:
            raise DataError(
                f"eval.protocol = \"union\": split {name!r} has images of shape {data.images.shape[1:]}, "
                f"split {first_name!r} {first.images.shape[1:]}; they cannot be trained on together"
            )
        if data.classes != first.classes:
            raise DataError(f"eval.protocol = \"union\": splits {first_name!r} and {name!r} name different classes")
    images = np.concatenate([d.images for _, d in parts])
    labelled = all(d.labels is not None for _, d in parts)
    labels = np.concatenate([d.labels for _, d in parts if d.labels is not None]) if labelled else None
    ids = tuple(f"{name}/{i}" for name, d in parts for i in d.sample_ids())
    return ImageData(images, labels, first.classes, ids)
