"""A plain lightly training script using mihead's augmenter and loss (no recipe, no engine).

    python docs/examples/lightly_iic.py --images 256 --steps 20

The ``fast_autoaugment`` augmenter is the multi-view transform (PIL image -> list of V view
tensors, as lightly's ``MultiViewTransform``), lightly's ``LightlyDataset`` wraps a torch
dataset of CIFAR-10 images, and mihead's ``iic`` objective is the loss, an ``nn.Module``.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch
from lightly.data import LightlyDataset
from PIL import Image
from torch import nn

from mihead.contracts import ModelOutputs
from mihead.standalone import augmenter, objective

PACK = Path(__file__).resolve().parents[3] / "shared/data/cifar10/cifar10_jpeg_q75.npz"


class CifarImages(torch.utils.data.Dataset):
    """The first ``n`` CIFAR-10 training images of the compact JPEG pack, as PIL images put
    through ``transform`` (the attribute that lightly's ``LightlyDataset`` sets, as on a
    torchvision dataset)."""

    transform = None

    def __init__(self, pack: Path, n: int) -> None:
        data = np.load(pack)
        self.offsets, self.jpeg, self.labels = data["offsets"][: n + 1], data["jpeg"], data["labels"][:n]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[object, int]:
        raw = self.jpeg[self.offsets[i] : self.offsets[i + 1]].tobytes()
        image = Image.open(io.BytesIO(raw)).convert("RGB")
        return (self.transform(image) if self.transform else image), int(self.labels[i])


def main() -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=PACK)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--clusters", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)

    transform = augmenter("fast_autoaugment", size=32, views=args.views, crop=20)
    dataset = LightlyDataset.from_torch_dataset(CifarImages(args.pack, args.images), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, args.clusters), nn.Softmax(-1),
    )  # fmt: skip
    criterion = objective("iic", clusters=args.clusters, views=args.views)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    step, loss = 0, torch.tensor(0.0)
    while step < args.steps:
        for views, _labels, _names in loader:  # views: a list of V tensors [B, 3, 32, 32]
            probs = torch.stack([model(v) for v in views])[None]  # [heads=1, V, B, K]
            loss = criterion(ModelOutputs(probs=probs, over_probs=None, features={}))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            print(f"step {step:3d}  iic loss {loss.item():+.4f}")
            if step == args.steps:
                break
    return float(loss.detach())


if __name__ == "__main__":
    main()
