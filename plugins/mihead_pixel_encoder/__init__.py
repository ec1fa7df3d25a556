"""The ``pixels`` frozen encoder: an image's own pixels, flattened, as its embedding.

No network and nothing to download: the baseline a pretrained encoder has to beat ("are these
features better than the raw pixels?"), and an encoder whose features are known to be good
for small centred images such as scikit-learn's 8x8 digits (each digit's 10 nearest neighbours
by cosine similarity share its class 96% of the time), so that the frozen-encoder path (the
embedding cache, neighbour views, heads on vectors) can be checked end to end without
pretrained weights.
"""

from __future__ import annotations

import torch

from mihead import hookimpl
from mihead.contracts import Backbone, FrozenEncoder, FrozenEncoderParams


class PixelEncoder(FrozenEncoder[FrozenEncoderParams]):
    """Embedding = the image's C x H x W values in [0, 1], flattened (L2-normalised with
    ``normalize``)."""

    name = "pixels"

    @property
    def embedding_dim(self) -> int:
        return self.image.channels * self.image.size * self.image.size

    def identity(self) -> dict[str, str]:
        return {"model": self.name, "normalize": str(self.params.normalize).lower()}

    def prepare(self, device: torch.device) -> None:
        """Nothing to load."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1).float().div(255)
        return torch.nn.functional.normalize(flat, dim=1) if self.params.normalize else flat


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [PixelEncoder]
