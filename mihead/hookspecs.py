"""The hook specifications: the only ways a plugin extends mihead.

Each ``register_*`` hook returns the classes a plugin contributes, each keyed by its ``name``
class attribute. A plugin implements any subset of them with ``@mihead.hookimpl``::

    from mihead import hookimpl

    @hookimpl
    def register_objectives():
        return [MyObjective]

and registers its module under the ``mihead`` entry-point group of its package::

    [project.entry-points.mihead]
    my_plugin = "my_package.plugin"
"""

from __future__ import annotations

import pluggy

from mihead.contracts import Augmenter, Backbone, Dataset, Head, Objective

hookspec = pluggy.HookspecMarker("mihead")
hookimpl = pluggy.HookimplMarker("mihead")

__all__ = [
    "hookimpl",
    "hookspec",
    "register_augmenters",
    "register_backbones",
    "register_datasets",
    "register_heads",
    "register_objectives",
]


@hookspec
def register_backbones() -> list[type[Backbone]]:
    """Backbone classes: networks from images to the feature maps heads attach to.

    Returns subclasses of :class:`mihead.contracts.Backbone`, each with a unique ``name``, a
    ``Params`` dataclass and ``provides``, the named features it exposes to objectives.
    """


@hookspec
def register_heads() -> list[type[Head]]:
    """Head classes: one attachment point's features to cluster probabilities.

    Returns subclasses of :class:`mihead.contracts.Head` with a unique ``name`` and a
    ``Params`` dataclass extending :class:`mihead.contracts.HeadParams`.
    """


@hookspec
def register_objectives() -> list[type[Objective]]:
    """Objective classes: loss terms a recipe lists as ``[[objective]]`` tables.

    Returns subclasses of :class:`mihead.contracts.Objective` with a unique ``name``, a
    ``Params`` dataclass extending :class:`mihead.contracts.ObjectiveParams` and
    ``requires``, the backbone features they read.
    """


@hookspec
def register_augmenters() -> list[type[Augmenter]]:
    """Augmenter classes: V random views of each image.

    Returns subclasses of :class:`mihead.contracts.ImageAugmenter` (CPU, per image, in loader
    workers) and/or :class:`mihead.contracts.BatchAugmenter` (batched, on the device), with a
    unique ``name`` and a ``Params`` dataclass extending
    :class:`mihead.contracts.AugmenterParams`.
    """


@hookspec
def register_datasets() -> list[type[Dataset]]:
    """Dataset classes: named sources of uint8 images and optional labels.

    Returns subclasses of :class:`mihead.contracts.Dataset` with a unique ``name``, its
    ``splits`` and a ``Params`` dataclass extending :class:`mihead.contracts.DatasetParams`.
    """
