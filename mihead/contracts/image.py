"""What the plugin contracts say about images: their channels and size."""

from __future__ import annotations

import dataclasses

__all__ = ["ImageSpec"]


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """Channels and square side of images (H = W = size)."""

    channels: int
    size: int
