"""bench/train_step.py at its tiniest: it runs, prints every field, and its naive loss (Python
loops over head and view pairs) agrees with the objectives' batched loss. No timing is asserted."""

from __future__ import annotations

import re
from types import ModuleType

import pytest
import torch

from benchhelp import load_bench
from mihead.build import ObjectiveTerm


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("train_step")


def test_tiny_run_prints_every_field(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        bench.main(["--device", "cpu", "--batch", "4", "--width", "0.0625", "--size", "16", "--steps", "1", "--warmup", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "8 heads, 4 views, batch 4, 16 px views" in out
    checks = re.findall(r"loss check \((.+?)\): naive (\S+) batched (\S+) \|diff\| (\S+);", out)
    assert [c[0] for c in checks] == ["model outputs", "peaked probabilities"]
    for _, naive, batched, diff in checks:
        assert float(naive) == pytest.approx(float(batched), rel=1e-4, abs=1e-6)
        assert float(diff) < 1e-5
    assert float(checks[1][1]) < -0.05  # peaked, agreeing views: a real MI, not ~0 == ~0
    assert "loss check: agree" in out
    assert re.search(r"MI loss alone \(forward\+backward on the heads' probabilities\): naive loops [\d.,]+ ms, batched [\d.,]+ ms", out)
    assert "host syncs in forward+loss+backward: none" in out
    assert re.search(r"flops per step \(forward\+backward\): [\d.,]+ GFLOP", out)
    for label in ("baseline (eager fp32, naive MI loops)", "mihead (fp32, batched MI"):
        line = next(line for line in out.splitlines() if line.startswith(label))
        for field in (r"step [\d.,]+ ms", r"[\d.,]+ images/s", r"[\d.,]+ views/s", r"peak memory [\d.,]+ MiB", r"[\d.,]+ GFLOP/s"):
            assert re.search(field, line), (field, line)
    assert re.search(r"speed-up mihead / baseline: [\d.]+x", out)
    assert re.search(r"^mihead, dhog_push reach = whole_path \(the recipe's: head_specific\): step [\d.,]+ ms", out, re.M)
    ratio = re.search(r"dhog_push reach: step head_specific / whole_path ([\d.]+)x \(.* ms; ([\d.]+) / ([\d.]+) GFLOP\)", out)
    assert ratio and float(ratio[2]) > float(ratio[3])  # the push's second backward pass is counted
    assert re.search(r"epoch at this step time: 12500 steps \(50,000 images / batch 4\) x [\d.,]+ ms = [\d.,]+ s \(views given", out)
    assert "largest batch: skipped on CPU" in out
    assert "augmentation: none in the step (random views)" in out


def test_augment_makes_views_on_the_device_in_the_step(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        bench.main(["--device", "cpu", "--batch", "4", "--width", "0.0625", "--size", "16", "--steps", "1", "--warmup", "1", "--threads", "1", "--augment"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "augmentation: fast_autoaugment on the device in every step, ops indexed" in out
    # on the CPU the ops find their images with nonzero (free there); on CUDA they are masked
    assert re.search(r"host syncs in augmentation\+forward\+loss\+backward: .*nonzero", out)
    assert re.search(r"^mihead \(fp32, batched MI.*: step [\d.,]+ ms \| [\d.,]+ images/s", out, re.M)


def test_naive_loss_matches_batched_on_sharp_probabilities(bench: ModuleType) -> None:
    """The naive loss against the real objectives on one-hot-like assignments whose MI is
    known: views that agree exactly on a uniform assignment of K clusters give MI = log K."""
    from mihead.contracts import ModelOutputs, ObjectiveContext
    from mihead_dhog_push import DHOGPush, DHOGPushParams
    from mihead_iic import IIC, IICParams

    k, heads, views, batch = 4, 3, 2, 400
    labels = torch.arange(batch) % k
    probs = torch.nn.functional.one_hot(labels, k).float().expand(heads, views, batch, k).clone()
    context = ObjectiveContext(heads=heads, views=views, clusters=k, overclusters=0, feature_channels={})
    terms = [ObjectiveTerm("iic", 1.0, IIC(IICParams(), context)), ObjectiveTerm("dhog_push", 0.05, DHOGPush(DHOGPushParams(), context))]
    outputs = ModelOutputs(probs=probs, over_probs=None, features={})
    # pull: -log K; push: heads 2 and 3 each share log K with every earlier head -> (1/2 + 2/3) log K
    expected = -torch.log(torch.tensor(float(k))) * (1 - 0.05 * (1 / 2 + 2 / 3))
    assert float(bench.naive_loss(outputs, terms)) == pytest.approx(float(expected), rel=1e-5)
    assert float(bench.batched_loss(outputs, terms)) == pytest.approx(float(expected), rel=1e-5)
