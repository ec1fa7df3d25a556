"""The abstract plugin classes and what each takes and gives."""

from mihead.contracts.augmenter import Augmenter, AugmenterParams, BatchAugmenter, EmbeddingAugmenter, ImageAugmenter
from mihead.contracts.backbone import Backbone, BackboneOutput
from mihead.contracts.dataset import OPTIONAL_KEYS, Dataset, DatasetParams, ImageData
from mihead.contracts.encoder import FrozenEncoder, FrozenEncoderParams
from mihead.contracts.head import Head, HeadParams
from mihead.contracts.image import ImageSpec
from mihead.contracts.objective import ModelOutputs, Objective, ObjectiveContext, ObjectiveParams
from mihead.contracts.params import INT64_RANGE, INT_RANGE, ParamInfo, Params, describe, param
from mihead.contracts.plugin import Plugin

KINDS: dict[str, type[Plugin]] = {
    "backbone": Backbone,
    "head": Head,
    "objective": Objective,
    "augmenter": Augmenter,
    "dataset": Dataset,
}

__all__ = [
    "INT64_RANGE",
    "INT_RANGE",
    "KINDS",
    "OPTIONAL_KEYS",
    "Augmenter",
    "AugmenterParams",
    "Backbone",
    "BackboneOutput",
    "BatchAugmenter",
    "Dataset",
    "EmbeddingAugmenter",
    "DatasetParams",
    "FrozenEncoder",
    "FrozenEncoderParams",
    "Head",
    "HeadParams",
    "ImageAugmenter",
    "ImageData",
    "ImageSpec",
    "ModelOutputs",
    "Objective",
    "ObjectiveContext",
    "ObjectiveParams",
    "ParamInfo",
    "Params",
    "Plugin",
    "describe",
    "param",
]
