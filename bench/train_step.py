"""One DHOG CIFAR-10 training step, timed: mihead's step beside a plain eager fp32 baseline.

    python bench/train_step.py                                       # GPU: the recipe's full size
    python bench/train_step.py --batch 16 --width 0.25 --size 32     # CPU defaults (2 cores: < 1 min)
    python bench/train_step.py --compile --channels-last --no-bf16   # switches (see --help)
    python bench/train_step.py --augment                             # views made on the device in the step

The model and objectives are those of recipes/dhog_cifar10.toml (ResNet-18 with blocks 1-3
shared and 5 copies of block 4, 8 MLP heads, 4 views, ``iic`` pull + 0.05 ``dhog_push``),
built by :func:`mihead.build.build_model` from the loaded recipe, with the sizes of the command
line set as recipe overrides. Views are random tensors, so the step's time excludes data loading
and augmentation (bench/augment.py measures those); with ``--augment`` each step starts from
uint8 32 px images instead and makes its views with the recipe's augmenter on the device, as a
GPU run does (``augment.where = auto`` on CUDA), so that 227 steps are an epoch.

Two configurations of the same model (same initial weights) are timed in the same run:

* baseline: eager fp32, no autocast, no channels-last, no compile, and the MI of the head pairs
  and view pairs in Python loops over the pairs, as a naive implementation writes them
  (:func:`naive_loss`, written here independently of mihead.mi);
* mihead: the engine's step (mihead/engine.py ``_train_step``): bf16 autocast on CUDA
  (``train.precision = auto``), channels-last and cuDNN benchmarking (``torch.backends.cudnn.
  benchmark``, ``train.cudnn_benchmark``) on CUDA, optional torch.compile of the model,
  every head's and view pair's MI batched in one operation (mihead/mi.py).

Before timing, the naive loss and the objectives' batched loss (and their gradients with
respect to the heads' probabilities) are asserted equal on the same fp32 outputs, and one
forward+loss+backward of the mihead step is audited for operations that force a host sync
(``.item()``, ``bool(tensor)``, ``nonzero``, host data copied in). Printed per configuration:
step time, images/s (images = batch) and views/s, peak memory (CUDA: max_memory_allocated;
CPU: the process's peak RSS so far), and the FLOPs of one forward+backward (counted with
FlopCounterMode) as a fraction of the GPU's dense bf16 peak, or as GFLOP/s on CPU; then the
epoch that the mihead step time gives (50,000 images / batch steps, without data loading). The
mihead step is then timed again with the push's other ``reach`` (``whole_path`` or
``head_specific``, mihead/gradients.py), from the same initial weights, and the ratio of the
two step times printed: what keeping the push out of the shared blocks costs. On
CUDA, the largest batch whose mihead step fits is then found by doubling until out-of-memory
(``--max-batch 0`` skips it: with ``--compile`` every new batch size is a recompilation).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mihead.build import ObjectiveTerm, build_model, model_shape
from mihead.contracts import ImageSpec, ModelOutputs
from mihead.device import autocast
from mihead.gradients import backward
from mihead.model import MultiHeadModel
from mihead.op_audit import host_syncs
from mihead.optim import make_optimizer
from mihead.plugins import load_registry
from mihead.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "dhog_cifar10.toml"
CIFAR = ImageSpec(channels=3, size=32)  # the dataset's images, before the augmenter
CIFAR_CLASSES = 10
CIFAR_TRAIN = 50_000  # training images: an epoch is CIFAR_TRAIN // batch steps
EPS = 1e-10
# dense bf16 tensor-core peaks in FLOP/s (vendor figures, without sparsity), by device name
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}

Terms = list[ObjectiveTerm]


# --- the naive loss --------------------------------------------------------------------------
def naive_mi(z: torch.Tensor, z2: torch.Tensor, symmetric: bool, lamb: float = 1.0) -> torch.Tensor:
    """MI of the assignments of two [B, K] probability batches, as IIC's reference code writes
    it: the joint P = mean_b z_b z2_b^T by broadcasting, (P + P^T) / 2 for two views of one
    head, then sum_ij P_ij (log P_ij - lamb log P_i - lamb log P_j), logs clamped at EPS."""
    p = (z.unsqueeze(2) * z2.unsqueeze(1)).sum(0) / z.shape[0]
    if symmetric:
        p = (p + p.t()) / 2
    p_i = p.sum(1, keepdim=True).expand_as(p)
    p_j = p.sum(0, keepdim=True).expand_as(p)
    log = lambda t: t.clamp_min(EPS).log()  # noqa: E731
    return (p * (log(p) - lamb * log(p_i) - lamb * log(p_j))).sum()


def naive_pull(probs: torch.Tensor, lamb: float) -> torch.Tensor:
    """-MI_pull (DHOG eq. 3): minus the mean over heads and view pairs v < w, one pair at a time."""
    heads, views = probs.shape[:2]
    terms = [
        naive_mi(probs[h, v], probs[h, w], True, lamb)
        for h in range(heads)
        for v in range(views)
        for w in range(v + 1, views)
    ]
    return -sum(terms) / len(terms)  # type: ignore[return-value]


def naive_push(probs: torch.Tensor) -> torch.Tensor:
    """MI_push (DHOG eq. 4), averaged over views: head i (from 1) sums its MI with each earlier
    head j < i (detached: the hierarchy's gradient stop), divided by i; one pair at a time."""
    heads, views = probs.shape[:2]
    total = probs.new_zeros(())
    for v in range(views):
        for i in range(heads):
            for j in range(i):
                total = total + naive_mi(probs[i, v], probs[j, v].detach(), False) / (i + 1)
    return total / views


def naive_loss(outputs: ModelOutputs, objectives: Terms) -> torch.Tensor:
    """The recipe's weighted sum of terms, computed by :func:`naive_pull` and :func:`naive_push`."""
    loss = outputs.probs.new_zeros(())
    for objective in objectives:
        module = objective.module
        if module.name == "iic":
            lamb = module.params.lamb  # type: ignore[attr-defined]
            term = naive_pull(outputs.probs, lamb)
            if module.params.overclustering and outputs.over_probs is not None:  # type: ignore[attr-defined]
                term = term + naive_pull(outputs.over_probs, lamb)
        elif module.name == "dhog_push":
            term = naive_push(outputs.probs)
        else:
            raise SystemExit(f"bench/train_step.py has no naive form of objective {module.name!r}")
        loss = loss + objective.weight * term
    return loss


def batched_loss(outputs: ModelOutputs, objectives: Terms) -> torch.Tensor:
    """The weighted sum of the objectives' terms, as the engine sums them."""
    return sum(term.weight * term.module(outputs) for term in objectives)  # type: ignore[return-value]


def check_losses(outputs: ModelOutputs, objectives: Terms) -> str:
    """Asserts that :func:`naive_loss` and :func:`batched_loss` agree on ``outputs``, in value
    and in gradient with respect to the main heads' probabilities; returns the figures."""
    naive, batched = naive_loss(outputs, objectives), batched_loss(outputs, objectives)
    g_naive = torch.autograd.grad([naive], [outputs.probs], retain_graph=True)[0]
    g_batched = torch.autograd.grad([batched], [outputs.probs])[0]
    a, b = float(naive.detach()), float(batched.detach())
    diff, gdiff, scale = abs(a - b), float((g_naive - g_batched).abs().max()), float(g_naive.abs().max())
    assert diff <= 1e-5 + 1e-4 * abs(a), f"naive loss {a} and batched loss {b} differ"
    assert gdiff <= 1e-4 * scale + 1e-9, f"naive and batched gradients differ by up to {gdiff}"
    return f"naive {a:.7f} batched {b:.7f} |diff| {diff:.2e}; gradient max |diff| {gdiff:.2e} (max |gradient| {scale:.2e})"


# --- the steps -------------------------------------------------------------------------------
class Step:
    """One optimiser step of a model and its objectives on fixed inputs, in one configuration:
    views, or with ``augment``, uint8 images that it turns into views first."""

    def __init__(
        self,
        model: MultiHeadModel,
        objectives: Terms,
        recipe: Recipe,
        device: torch.device,
        *,
        naive: bool,
        precision: str,
        channels_last: bool,
        compile: bool,
        cudnn_benchmark: bool = False,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.cudnn_benchmark = cudnn_benchmark
        self.model, self.objectives, self.device, self.augment = model, objectives, device, augment
        self.naive, self.precision, self.channels_last = naive, precision, channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if compile else model
        self.forward: Callable[[torch.Tensor], ModelOutputs] = forward  # type: ignore[assignment]
        params = list(model.parameters()) + [p for term in objectives for p in term.module.parameters()]
        self.optimizer = make_optimizer(params, recipe.train)

    def backward(self, inputs: torch.Tensor) -> None:
        """The augmentation if any, the forward pass, the loss and its backward pass (what the
        engine's view source, ``_LossTerms`` and :func:`mihead.gradients.backward` compute;
        the baseline: its naive loss's plain backward)."""
        views = self.augment(inputs) if self.augment is not None else inputs
        if self.channels_last and views.ndim == 4:  # as the engine: 5-D views stay as they are
            views = views.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            outputs = self.forward(views)
            terms = {"naive": naive_loss(outputs, self.objectives)} if self.naive else {t.name: t.module(outputs) for t in self.objectives}
        if self.naive:
            terms["naive"].backward()
        else:
            backward(terms, self.objectives, self.model)

    def __call__(self, inputs: torch.Tensor) -> None:
        torch.backends.cudnn.benchmark = self.cudnn_benchmark  # a process-wide switch: set per step
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(inputs)
        self.optimizer.step()


def push_reach(objectives: Terms) -> str:
    """The ``reach`` of the ``dhog_push`` term."""
    return next(str(t.module.params.reach) for t in objectives if t.module.name == "dhog_push")


def with_reach(objectives: Terms, reach: str) -> Terms:
    """``objectives`` with the ``dhog_push`` term rebuilt at ``reach`` (weights unchanged)."""
    return [
        dataclasses.replace(t, module=type(t.module)(dataclasses.replace(t.module.params, reach=reach), t.module.context)) if t.module.name == "dhog_push" else t
        for t in objectives
    ]


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def audit_syncs(step: Step, inputs: torch.Tensor) -> list[str]:
    """Host-syncing operations in one eager (augmentation +) forward + loss + backward of ``step``. The
    optimiser is left out: Adam keeps its step count on the host (torch's default when not
    ``capturable``), so its ``.item()`` reads host memory and does not wait for the device."""
    seen = host_syncs(lambda: step.backward(inputs))
    step.optimizer.zero_grad(set_to_none=True)
    return seen


def count_flops(step: Step, inputs: torch.Tensor) -> int:
    """FLOPs of one forward + loss + backward (matrix products and convolutions)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step.backward(inputs)
    step.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (max_memory_allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB (process peak RSS so far)"


def time_step(step: Step, inputs: torch.Tensor, warmup: int, steps: int) -> tuple[float, float]:
    """(seconds of the first warm-up step, which includes any compilation; mean seconds per
    timed step). Warm-up steps are not timed; the device is synchronised around the timed
    steps only."""
    if step.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(step.device)
    synchronise(step.device)
    start = time.perf_counter()
    step(inputs)
    synchronise(step.device)
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step(inputs)
    synchronise(step.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(inputs)
    synchronise(step.device)
    return first, (time.perf_counter() - start) / steps


def batch_dim(inputs: torch.Tensor) -> int:
    """The batch dimension of views [V, B, C, H, W] or of images [B, C, H, W]."""
    return 1 if inputs.ndim == 5 else 0


def largest_batch(step: Step, inputs: torch.Tensor, limit: int) -> tuple[int, int | None]:
    """(largest batch that ran, the first that ran out of memory or None), doubling from the
    batch of ``inputs``, which is doubled by repeating them."""
    dim = batch_dim(inputs)
    batch, fitted = inputs.shape[dim], 0
    while batch <= limit:
        try:
            repeats = [1] * inputs.ndim
            repeats[dim] = batch // inputs.shape[dim]
            big = inputs.repeat(*repeats)
            step(big)
            step(big)
            synchronise(step.device)
            fitted = batch
        except torch.cuda.OutOfMemoryError:
            return fitted, batch
        finally:
            big = None
            step.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
        batch *= 2
    return fitted, None


def time_losses(probs: torch.Tensor, objectives: Terms, steps: int) -> tuple[float, float]:
    """Mean seconds of the naive and of the batched loss alone, forward + backward on leaf
    probabilities [H, V, B, K] (what the MI costs beside the network)."""
    outputs = ModelOutputs(probs=probs.detach().requires_grad_(), over_probs=None, features={})
    result = []
    for loss in (naive_loss, batched_loss):
        loss(outputs, objectives).backward()  # warm-up
        synchronise(probs.device)
        start = time.perf_counter()
        for _ in range(steps):
            loss(outputs, objectives).backward()
        synchronise(probs.device)
        result.append((time.perf_counter() - start) / steps)
    return result[0], result[1]


def bf16_peak(device: torch.device) -> tuple[str, float | None]:
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def report(label: str, step: Step, inputs: torch.Tensor, views: int, flops: int, warmup: int, steps: int) -> float:
    first, seconds = time_step(step, inputs, warmup, steps)
    v, b = views, inputs.shape[batch_dim(inputs)]
    if step.device.type == "cuda":
        name, peak = bf16_peak(step.device)
        rate = f"{flops / seconds / peak:.1%} of {name} dense bf16 peak" if peak else f"bf16 peak unknown for {name}"
    else:
        rate = f"{flops / seconds / 1e9:,.1f} GFLOP/s"
    print(
        f"{label}: step {seconds * 1e3:,.1f} ms | {b / seconds:,.1f} images/s | {v * b / seconds:,.1f} views/s | "
        f"peak memory {peak_memory(step.device)} | {rate} | first step {first:,.2f} s",
        flush=True,
    )
    return seconds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    ap.add_argument("--batch", type=int, help="images per step (default: the recipe's 220 on CUDA, 16 on CPU)")
    ap.add_argument("--width", type=float, help="backbone.width (default: the recipe's 1 on CUDA, 0.25 on CPU)")
    ap.add_argument("--size", type=int, help="side of the views in px, augment.size (default 32)")
    ap.add_argument("--steps", type=int, help="timed steps (default 20 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default 5 on CUDA, 1 on CPU)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile the model")
    ap.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None,
        help="bf16 autocast (default: the recipe's train.precision = auto: on CUDA only)",
    )
    ap.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=None,
        help="channels-last model (default: the recipe's train.channels_last, which the engine applies on CUDA only)",
    )
    ap.add_argument(
        "--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=None,
        help="cuDNN's algorithm timing (default: the recipe's train.cudnn_benchmark, which the engine applies on CUDA only)",
    )
    ap.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=False,
        help="start each step from uint8 32 px images and make the views with the recipe's augmenter "
        "on the device (augment.where = device), as a GPU run does; else the views are random tensors",
    )
    ap.add_argument("--max-batch", type=int, default=1 << 16, help="stop the largest-batch search here (CUDA; 0 = no search)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    full = args.device == "cuda"
    args.batch = args.batch or (220 if full else 16)
    args.width = args.width or (1.0 if full else 0.25)
    args.size = args.size or 32
    args.steps = args.steps or (20 if full else 3)
    args.warmup = max(1, args.warmup or (5 if full else 1))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sets = [
        f"backbone.width={args.width}",
        f"augment.size={args.size}",
        f"train.batch_size={args.batch}",
        f"train.device={args.device}",
    ]
    if args.bf16 is not None:
        sets.append(f"train.precision={'bf16' if args.bf16 else 'fp32'}")
    recipe = load_recipe(RECIPE, load_registry(strict=False), sets)
    augmenter = recipe.augment.cls(recipe.augment.params, CIFAR)
    shape = model_shape(recipe, augmenter, device, classes=CIFAR_CLASSES)
    assert shape is not None  # CIFAR's ten classes
    clusters = shape.clusters
    torch.manual_seed(args.seed)
    model, objectives = build_model(recipe, augmenter, shape, device)
    naive_model = copy.deepcopy(model)  # the same initial weights
    reach_model = copy.deepcopy(model)
    naive_objectives = copy.deepcopy(objectives)
    v, s = augmenter.num_views, augmenter.output.size
    views = torch.rand(v, args.batch, augmenter.output.channels, s, s, device=device)
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    inputs = views
    if args.augment:
        generator = torch.Generator(device=device).manual_seed(args.seed)
        augment = lambda images: augmenter.batch_views(images, generator)  # noqa: E731
        inputs = torch.randint(0, 256, (args.batch, CIFAR.channels, CIFAR.size, CIFAR.size), dtype=torch.uint8, device=device)

    on_cuda = device.type == "cuda"
    channels_last = args.channels_last if args.channels_last is not None else recipe.train.channels_last and on_cuda
    cudnn_benchmark = (args.cudnn_benchmark if args.cudnn_benchmark is not None else recipe.train.cudnn_benchmark) and on_cuda
    precision = recipe.train.precision
    bf16 = precision == "bf16" or (precision == "auto" and on_cuda)
    command = " ".join([sys.executable, *sys.argv]) if argv is None else f"main({list(argv)!r})"
    print(f"command: {command}")
    name = torch.cuda.get_device_name(device) if on_cuda else "cpu"
    print(f"device: {name} | torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(
        f"model: {RECIPE.name}: {recipe.backbone.entry.name} width {args.width}, {model.num_heads} heads, "
        f"{v} views, batch {args.batch}, {s} px views, {clusters} clusters, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, objectives "
        + ", ".join(f"{term.weight:g} x {term.name}" for term in objectives)
    )
    if augment is None:
        print("augmentation: none in the step (random views)")
    else:
        masked = augmenter.batched.masked if augmenter.batched.masked is not None else on_cuda  # type: ignore[attr-defined]
        print(f"augmentation: {recipe.augment.entry.name} on the device in every step, ops {'masked' if masked else 'indexed'}")

    def step(model: MultiHeadModel, objectives: Terms, naive: bool, tuned: bool, compile: bool) -> Step:
        """A step of ``model``: tuned = the recipe's precision, channels-last and cuDNN
        benchmarking, else plain fp32."""
        return Step(
            model, objectives, recipe, device, naive=naive, compile=compile,
            precision=precision if tuned else "fp32", channels_last=channels_last and tuned,
            cudnn_benchmark=cudnn_benchmark and tuned, augment=augment,
        )

    baseline = step(naive_model, naive_objectives, naive=True, tuned=False, compile=False)
    fast = step(model, objectives, naive=False, tuned=True, compile=args.compile)

    # the same fp32 outputs through both losses: the model's at initialisation (near-uniform,
    # MI near 0) and random peaked probabilities whose views agree (MI well above 0)
    shared = torch.randn(model.num_heads, 1, args.batch, clusters, device=device)
    logits = 3 * shared + torch.randn(model.num_heads, v, args.batch, clusters, device=device)
    peaked = ModelOutputs(probs=logits.softmax(-1).requires_grad_(), over_probs=None, features={})
    for name, outputs in (("model outputs", naive_model(views)), ("peaked probabilities", peaked)):
        print(f"loss check ({name}): {check_losses(outputs, objectives)}")
    print("loss check: agree")
    naive_s, batched_s = time_losses(peaked.probs, objectives, max(args.steps, 10))
    print(
        f"MI loss alone (forward+backward on the heads' probabilities): naive loops {naive_s * 1e3:,.2f} ms, "
        f"batched {batched_s * 1e3:,.2f} ms ({naive_s / batched_s:.1f}x)"
    )
    del outputs, peaked

    seen = audit_syncs(step(copy.deepcopy(model), objectives, naive=False, tuned=True, compile=False), inputs)
    what = "augmentation+forward+loss+backward" if augment else "forward+loss+backward"
    print(f"host syncs in {what}: {', '.join(sorted(set(seen))) if seen else 'none'}")
    flops = count_flops(step(copy.deepcopy(model), objectives, naive=False, tuned=False, compile=False), inputs)
    print(f"flops per step (forward+backward): {flops / 1e9:,.2f} GFLOP")

    base_s = report("baseline (eager fp32, naive MI loops)", baseline, inputs, v, flops, args.warmup, args.steps)
    del baseline, naive_model
    gc.collect()
    on = lambda flag: "on" if flag else "off"  # noqa: E731
    label = f"mihead ({'bf16 autocast' if bf16 else 'fp32'}, batched MI, channels_last {on(channels_last)}, cudnn.benchmark {on(cudnn_benchmark)}, compile {on(args.compile)})"
    fast_s = report(label, fast, inputs, v, flops, args.warmup, args.steps)
    print(f"speed-up mihead / baseline: {base_s / fast_s:.2f}x")
    recipe_reach = push_reach(objectives)
    other = "head_specific" if recipe_reach == "whole_path" else "whole_path"
    switched = with_reach(objectives, other)
    other_flops = count_flops(step(copy.deepcopy(reach_model), switched, naive=False, tuned=False, compile=False), inputs)
    other_step = step(reach_model, switched, naive=False, tuned=True, compile=args.compile)
    other_s = report(f"mihead, dhog_push reach = {other} (the recipe's: {recipe_reach})", other_step, inputs, v, other_flops, args.warmup, args.steps)
    seconds = {recipe_reach: fast_s, other: other_s}
    gflops = {recipe_reach: flops / 1e9, other: other_flops / 1e9}
    print(
        f"dhog_push reach: step head_specific / whole_path {seconds['head_specific'] / seconds['whole_path']:.2f}x "
        f"({seconds['head_specific'] * 1e3:,.1f} / {seconds['whole_path'] * 1e3:,.1f} ms; "
        f"{gflops['head_specific']:,.2f} / {gflops['whole_path']:,.2f} GFLOP)"
    )
    del other_step, reach_model
    steps = CIFAR_TRAIN // args.batch
    what = "augmentation included" if augment else "views given: no augmentation"
    print(f"epoch at this step time: {steps} steps ({CIFAR_TRAIN:,} images / batch {args.batch}) x {fast_s * 1e3:,.1f} ms = {steps * fast_s:,.1f} s ({what}; no data loading)")
    if on_cuda and args.max_batch == 0:
        print("largest batch: not searched (--max-batch 0)")
    elif on_cuda:
        fitted, failed = largest_batch(fast, inputs, args.max_batch)
        beyond = f"; batch {failed} ran out of memory" if failed else f"; search stopped at --max-batch {args.max_batch}"
        print(f"largest batch: {fitted} (doubling from {args.batch}{beyond})")
    else:
        print("largest batch: skipped on CPU (the doubling search until out-of-memory needs a GPU)")


if __name__ == "__main__":
    main()
