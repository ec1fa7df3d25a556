"""Helpers for testing plugins: fake model outputs and one contract check per plugin kind.

A plugin author tests a new class in two lines::

    from mihead.testing import check_plugin
    check_plugin("objective", MyObjective)

Each ``check_*`` builds the class with its declared defaults (or the parameters given), runs it
on small random inputs of the shapes mihead passes, and raises :class:`ContractError` (an
``AssertionError``, so pytest shows it as a failure) naming the class and the broken promise.
mihead's own ``tests/core/test_contracts.py`` runs :func:`check_plugin` on every registered
plugin, built-in or installed, so a new plugin is covered without writing a test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np
import torch

from mihead.contracts import (
    KINDS,
    OPTIONAL_KEYS,
    Augmenter,
    AugmenterParams,
    Backbone,
    BackboneOutput,
    BatchAugmenter,
    Dataset,
    DatasetParams,
    EmbeddingAugmenter,
    FrozenEncoder,
    Head,
    HeadParams,
    ImageAugmenter,
    ImageData,
    ImageSpec,
    ModelOutputs,
    Objective,
    ObjectiveContext,
    ObjectiveParams,
    Params,
    Plugin,
    describe,
)

__all__ = [
    "ContractError",
    "check_augmenter",
    "check_backbone",
    "check_dataset",
    "check_head",
    "check_objective",
    "check_params",
    "check_plugin",
    "context_of",
    "fake_outputs",
]

DEFAULT_IMAGE = ImageSpec(channels=3, size=32)


class ContractError(AssertionError):
    """A plugin class that does not keep its kind's contract."""


def _fail(cls: type, message: str) -> NoReturn:
    raise ContractError(f"{getattr(cls, 'name', cls.__qualname__)!r} ({cls.__qualname__}): {message}")


def _require(ok: bool, cls: type, message: str) -> None:
    if not ok:
        _fail(cls, message)


def fake_outputs(
    heads: int = 2,
    views: int = 2,
    batch: int = 8,
    clusters: int = 4,
    overclusters: int = 0,
    features: Mapping[str, tuple[int, ...]] | None = None,
    *,
    sharpness: float = 4.0,
    seed: int = 0,
    requires_grad: bool = True,
) -> ModelOutputs:
    """Random :class:`ModelOutputs` of the given shape: ``probs`` float32 [H, V, B, K] (softmax
    of Gaussian logits times ``sharpness``, so some rows are confident), ``over_probs`` likewise
    with ``overclusters`` (None when 0), and ``features[name]`` float [V, B, *shape].

    With ``requires_grad`` the probabilities and features are non-leaf tensors computed from
    leaves that require a gradient; read the leaves back as ``outputs.leaves`` (a dict) to see
    where an objective's gradient goes.
    """
    g = torch.Generator().manual_seed(seed)
    leaves: dict[str, torch.Tensor] = {}

    def leaf(name: str, *shape: int, scale: float = 1.0) -> torch.Tensor:
        t = (torch.randn(*shape, generator=g) * scale).requires_grad_(requires_grad)
        leaves[name] = t
        return t

    probs = leaf("probs", heads, views, batch, clusters, scale=sharpness).softmax(-1)
    over = leaf("over_probs", heads, views, batch, overclusters, scale=sharpness).softmax(-1) if overclusters else None
    feats = {name: leaf(name, views, batch, *shape) * 1.0 for name, shape in (features or {}).items()}
    outputs = ModelOutputs(probs=probs, over_probs=over, features=feats)
    outputs.leaves = leaves  # type: ignore[attr-defined]
    return outputs


def context_of(outputs: ModelOutputs) -> ObjectiveContext:
    """The :class:`ObjectiveContext` a model giving ``outputs`` hands its objectives."""
    h, v, _, k = outputs.probs.shape
    over = 0 if outputs.over_probs is None else outputs.over_probs.shape[-1]
    return ObjectiveContext(h, v, k, over, {n: int(f.shape[2]) for n, f in outputs.features.items()})


def check_params(cls: type[Plugin]) -> Params:
    """The class's ``Params`` is a frozen dataclass whose every field has a default and a
    help text; returns the default instance."""
    params_type = cls.Params
    _require(dataclasses.is_dataclass(params_type), cls, "Params is not a dataclass")
    _require(params_type.__dataclass_params__.frozen, cls, "Params is not frozen")  # type: ignore[attr-defined]
    try:
        infos = describe(params_type)
    except TypeError as exc:
        raise ContractError(f"{cls.__qualname__}.Params: {exc}") from None
    for info in infos:
        _require(bool(info.help), cls, f"parameter {info.name!r} has no help text (use mihead.contracts.param)")
    return params_type()


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _has_gradient(tensors: list[torch.Tensor]) -> bool:
    return any(t.grad is not None and bool(t.grad.abs().sum() > 0) for t in tensors)


def check_backbone(
    cls: type[Backbone], params: Params | None = None, image: ImageSpec = DEFAULT_IMAGE, batch: int = 2
) -> BackboneOutput:
    """Built for ``image``, the backbone maps float [N, C, H, W] in [0, 1] to one tensor per
    ``attach_channels`` entry, [N, C_i, ...], and exactly the ``provides`` features, [N, ...],
    all finite, with a gradient reaching its parameters."""
    params = params if params is not None else check_params(cls)
    net = cls(params, image)
    images = torch.rand(batch, *net.input_shape(), generator=torch.Generator().manual_seed(0))
    out = net(images)
    _require(isinstance(out, BackboneOutput), cls, f"forward returned {type(out).__name__}, not BackboneOutput")
    channels = net.attach_channels
    _require(len(out.attach) > 0, cls, "no attachment point")
    _require(len(out.attach) == len(channels), cls, f"{len(out.attach)} attachment tensors for {len(channels)} attach_channels")
    for i, (t, c) in enumerate(zip(out.attach, channels, strict=True)):
        _require(t.ndim in (2, 4) and t.shape[:2] == (batch, c), cls, f"attach[{i}] has shape {tuple(t.shape)}, expected [{batch}, {c}, ...]")
        _require(_finite(t), cls, f"attach[{i}] is not finite")
    _require(set(out.features) == set(cls.provides), cls, f"features {sorted(out.features)} differ from provides {sorted(cls.provides)}")
    for name, t in out.features.items():
        _require(t.shape[0] == batch and _finite(t), cls, f"feature {name!r} has shape {tuple(t.shape)} or is not finite")
    if isinstance(net, FrozenEncoder):
        _check_frozen(cls, net, image, batch)
        return out
    total = sum(t.float().mean() for t in [*out.attach, *out.features.values()])
    total.backward()
    _require(_has_gradient(list(net.parameters())), cls, "no gradient reaches the parameters")
    _check_owned(cls, net, images)
    return out


def _check_frozen(cls: type[Backbone], net: FrozenEncoder, image: ImageSpec, batch: int) -> None:
    """A frozen encoder: no trainable parameter and nothing in its state but its identity
    (its weights stay out of checkpoints), the identity on its embeddings in the model, and
    finite embeddings [N, D] of uint8 images (unit length when normalised)."""
    _require(not list(net.parameters()), cls, "a frozen encoder has parameters (they would be trained and checkpointed)")
    _require(list(net.state_dict()) == ["_extra_state"], cls, f"its state holds {sorted(net.state_dict())}, not only its identity")
    _require(all(isinstance(v, str) for v in net.identity().values()), cls, "identity() values are not all strings")
    vectors = torch.rand(batch, net.embedding_dim)
    _require(net(vectors).attach[0] is vectors, cls, "in the model it is not the identity on embeddings")
    net.prepare(torch.device("cpu"))
    images = torch.randint(0, 256, (batch, image.channels, image.size, image.size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        emb = net.encode(images)
    _require(tuple(emb.shape) == (batch, net.embedding_dim) and _finite(emb), cls, f"encode gave {tuple(emb.shape)}, not finite [{batch}, {net.embedding_dim}]")
    if net.params.normalize:
        _require(bool(torch.allclose(emb.float().norm(dim=1), torch.ones(batch), atol=1e-3)), cls, "normalised embeddings are not of unit length")


def _check_owned(cls: type[Backbone], net: Backbone, images: torch.Tensor) -> None:
    """``owned_parameters``: None exactly when the class does not override it; else one list per
    attachment point of the backbone's own parameters, no parameter in two lists, each point's
    features reached by its own parameters' gradient and by no other point's."""
    owned = net.owned_parameters()
    _require((owned is not None) == cls.declares_owned(), cls, "owned_parameters() returns None although the class overrides it, or the reverse")
    if owned is None:
        return
    out = net(images)
    _require(len(owned) == len(out.attach), cls, f"owned_parameters() has {len(owned)} lists for {len(out.attach)} attachment points")
    ids = [id(p) for own in owned for p in own]
    _require(len(ids) == len(set(ids)), cls, "a parameter is owned by two attachment points (or listed twice)")
    _require(set(ids) <= {id(p) for p in net.parameters()}, cls, "owned_parameters() lists a parameter that is not the backbone's")
    for i, t in enumerate(out.attach):
        for j, own in enumerate(owned):
            if not own:
                continue
            grads = torch.autograd.grad(t.float().mean(), own, retain_graph=True, allow_unused=True)
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            if i == j:
                _require(reached, cls, f"attach[{i}] does not depend on the parameters it owns")
            else:
                _require(not reached, cls, f"attach[{i}] depends on parameters owned by attachment point {j}")


def check_head(
    cls: type[Head], params: Params | None = None, in_channels: int = 16, clusters: int = 5, batch: int = 4
) -> torch.Tensor:
    """The head maps vectors [N, C] and maps [N, C, H, W] to float32 probabilities [N, K]:
    non-negative rows that sum to one, with a gradient reaching its parameters."""
    params = params if params is not None else check_params(cls)
    if not isinstance(params, HeadParams):
        _fail(cls, "Params does not extend HeadParams")
    head = cls(params, in_channels, clusters)
    g = torch.Generator().manual_seed(0)
    probs = torch.empty(0)
    for shape in ((batch, in_channels), (batch, in_channels, 3, 3)):
        probs = head(torch.randn(*shape, generator=g))
        _require(probs.shape == (batch, clusters), cls, f"input {shape}: output shape {tuple(probs.shape)}, expected {(batch, clusters)}")
        _require(probs.dtype == torch.float32, cls, f"probabilities are {probs.dtype}, not float32")
        _require(bool((probs >= 0).all()), cls, "negative probabilities")
        _require(torch.allclose(probs.sum(-1), torch.ones(batch), atol=1e-5), cls, "rows do not sum to one")
    probs[:, 0].sum().backward()
    _require(_has_gradient(list(head.parameters())), cls, "no gradient reaches the parameters")
    return probs


def check_objective(
    cls: type[Objective],
    params: Params | None = None,
    context: ObjectiveContext | None = None,
    outputs: ModelOutputs | None = None,
    feature_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> torch.Tensor:
    """The objective returns a finite float scalar from :func:`fake_outputs` (2 heads, 2
    views, 8 samples, 4 clusters, each feature in ``requires`` of ``feature_shapes[name]``,
    default [8, 4, 4]) whose gradient reaches the outputs or its own parameters."""
    params = params if params is not None else check_params(cls)
    shapes = {name: (feature_shapes or {}).get(name, (8, 4, 4)) for name in cls.requires}
    if outputs is None:
        outputs = fake_outputs(features=shapes)
    if context is None:
        context = context_of(outputs)
    _require(set(cls.requires) <= set(outputs.features), cls, f"requires {sorted(cls.requires)}, outputs give {sorted(outputs.features)}")
    if not isinstance(params, ObjectiveParams):
        _fail(cls, "Params does not extend ObjectiveParams")
    objective = cls(params, context)
    _require(isinstance(objective, torch.nn.Module), cls, "an objective must be an nn.Module")
    loss = objective(outputs)
    _require(isinstance(loss, torch.Tensor) and loss.ndim == 0, cls, f"returned {loss!r}, not a scalar tensor")
    value = float(loss.detach())
    _require(loss.is_floating_point() and math.isfinite(value), cls, f"returned {value}, not a finite float")
    _require(loss.requires_grad, cls, "the loss has no gradient")
    loss.backward()
    inputs = [outputs.probs, *([outputs.over_probs] if outputs.over_probs is not None else []), *outputs.features.values()]
    leaves = list(getattr(outputs, "leaves", {}).values()) + [t for t in inputs if t.is_leaf]
    _require(_has_gradient(leaves + list(objective.parameters())), cls, "no gradient reaches the outputs or the objective's parameters")
    _require(all(t.grad is None or _finite(t.grad) for t in leaves), cls, "the gradient is not finite")
    return loss.detach()


def check_augmenter(cls: type[Augmenter], params: Params | None = None, image: ImageSpec = DEFAULT_IMAGE, batch: int = 3) -> Augmenter:
    """Per flavour the augmenter implements: ``views`` gives uint8 [V, H', W', C'] (the
    ``output`` spec) and the same views for the same seed, ``eval_view`` uint8 [H', W', C'];
    ``batch_views`` gives float [V, B, C', H', W'] in [0, 1], the same for the same generator
    seed, and ``eval_batch`` float [B, C', H', W'] in [0, 1]; an embedding augmenter's
    ``view_rows`` gives int64 [V, B] rows of the table, the same for the same seed, and its
    ``augment`` (with copies) uint8 images of the input's shape, the same for the same seed."""
    params = params if params is not None else check_params(cls)
    if not isinstance(params, AugmenterParams):
        _fail(cls, "Params does not extend AugmenterParams")
    aug = cls(params, image)
    _require(isinstance(aug, (ImageAugmenter, BatchAugmenter, EmbeddingAugmenter)), cls, "not an ImageAugmenter, BatchAugmenter or EmbeddingAugmenter")
    out, v = aug.output, aug.num_views
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch, image.size, image.size, image.channels), dtype=np.uint8)
    if isinstance(aug, EmbeddingAugmenter):
        _check_embedding_views(aug, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    if isinstance(aug, ImageAugmenter):
        views = aug.views(images[0], np.random.default_rng(1))
        shape = (v, out.size, out.size, out.channels)
        _require(views.dtype == np.uint8 and views.shape == shape, cls, f"views gave {views.dtype} {views.shape}, expected uint8 {shape}")
        _require(np.array_equal(views, aug.views(images[0], np.random.default_rng(1))), cls, "views differ for the same rng seed")
        single = aug.eval_view(images[0])
        _require(single.dtype == np.uint8 and single.shape == shape[1:], cls, f"eval_view gave {single.dtype} {single.shape}, expected uint8 {shape[1:]}")
    if isinstance(aug, BatchAugmenter):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        views_t = aug.batch_views(x, torch.Generator().manual_seed(1))
        shape_t = (v, batch, out.channels, out.size, out.size)
        _require(views_t.is_floating_point() and tuple(views_t.shape) == shape_t, cls, f"batch_views gave {views_t.dtype} {tuple(views_t.shape)}, expected float {shape_t}")
        _require(bool(((views_t >= 0) & (views_t <= 1)).all()), cls, "batch_views outside [0, 1]")
        _require(torch.equal(views_t, aug.batch_views(x, torch.Generator().manual_seed(1))), cls, "batch_views differ for the same generator seed")
        single_t = aug.eval_batch(x)
        fits = tuple(single_t.shape) == shape_t[1:] and bool(((single_t >= 0) & (single_t <= 1)).all())
        _require(fits, cls, f"eval_batch gave {tuple(single_t.shape)} (expected {shape_t[1:]}) or values outside [0, 1]")
    return aug


def _check_embedding_views(aug: EmbeddingAugmenter, images: torch.Tensor, n: int = 12) -> None:
    cls, v, rows = type(aug), aug.num_views, (1 + aug.copies) * n
    prepared = aug.prepare(torch.nn.functional.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(0)), dim=1))
    index = torch.arange(n).flip(0)[: n // 2]
    picked = aug.view_rows(index, prepared, n, torch.Generator().manual_seed(1))
    _require(picked.dtype == torch.int64 and tuple(picked.shape) == (v, len(index)), cls, f"view_rows gave {picked.dtype} {tuple(picked.shape)}, expected int64 {(v, len(index))}")
    _require(bool(((picked >= 0) & (picked < rows)).all()), cls, f"view_rows outside the table's {rows} rows")
    _require(torch.equal(picked, aug.view_rows(index, prepared, n, torch.Generator().manual_seed(1))), cls, "view_rows differ for the same generator seed")
    if aug.copies:
        copy = aug.augment(images, torch.Generator().manual_seed(2))
        _require(copy.dtype == torch.uint8 and copy.shape == images.shape, cls, f"augment gave {copy.dtype} {tuple(copy.shape)}, expected uint8 {tuple(images.shape)}")
        _require(torch.equal(copy, aug.augment(images, torch.Generator().manual_seed(2))), cls, "augment differs for the same generator seed")


def check_dataset(cls: type[Dataset], params: Params | None = None, splits: tuple[str, ...] | None = None) -> dict[str, ImageData]:
    """``train_split`` and ``eval_split`` are among ``splits``, ``honours`` names only
    optional keys, and each split checked (by
    default those two) loads as uint8 [N, H, W, C] (C = 1 or 3) with labels None or int64 in
    range(len(classes)), and as ``image_spec()`` and ``class_count()`` say when they say it.
    Absent data raises :class:`mihead.errors.DataError`, which this check lets through (a
    caller may skip on it)."""
    params = params if params is not None else check_params(cls)
    _require(len(cls.splits) > 0 and all(isinstance(s, str) for s in cls.splits), cls, "splits must be a non-empty tuple of names")
    _require(cls.train_split in cls.splits and cls.eval_split in cls.splits, cls, "train_split and eval_split must be among splits")
    _require(cls.honours <= OPTIONAL_KEYS, cls, f"honours {sorted(cls.honours)}: only {', '.join(sorted(OPTIONAL_KEYS))} are optional keys")
    if not isinstance(params, DatasetParams):
        _fail(cls, "Params does not extend DatasetParams")
    dataset = cls(params)
    spec, count = dataset.image_spec(), dataset.class_count()
    loaded = {}
    for split in splits or tuple(dict.fromkeys((cls.train_split, cls.eval_split))):
        data = dataset.load(split)
        _require(isinstance(data, ImageData), cls, f"load({split!r}) returned {type(data).__name__}, not ImageData")
        _require(len(data) > 0 and data.images.shape[-1] in (1, 3), cls, f"split {split!r}: {data.images.shape} is empty or not 1/3 channels")
        if data.labels is not None:
            _require(data.labels.dtype == np.int64, cls, f"split {split!r}: labels are {data.labels.dtype}, not int64")
            _require(bool(((data.labels >= 0) & (data.labels < len(data.classes))).all()), cls, f"split {split!r}: labels outside range(len(classes))")
        n, h, w, c = data.images.shape
        _require(spec is None or (h, w, c) == (spec.size, spec.size, spec.channels), cls, f"split {split!r}: images {h}x{w}x{c}, image_spec() says {spec}")
        _require(not count or data.labels is None or len(data.classes) == count, cls, f"split {split!r}: {len(data.classes)} classes, class_count() says {count}")
        loaded[split] = data
    return loaded


_CHECKS: dict[str, Any] = {
    "backbone": check_backbone,
    "head": check_head,
    "objective": check_objective,
    "augmenter": check_augmenter,
    "dataset": check_dataset,
}


def check_plugin(kind: str, cls: type[Plugin], **kwargs: Any) -> object:
    """The contract check of ``kind`` (one of ``mihead.contracts.KINDS``) on ``cls``."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
    _require(isinstance(cls, type) and issubclass(cls, KINDS[kind]), cls, f"not a subclass of mihead.contracts.{KINDS[kind].__name__}")
    _require(isinstance(getattr(cls, "name", None), str) and bool(cls.name), cls, "no string 'name'")
    return _CHECKS[kind](cls, **kwargs)
