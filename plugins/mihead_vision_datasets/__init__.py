"""Vision datasets for the DHOG and IIC benchmarks, and a folder of one's own images.

``cifar10``, ``cifar100_20``, ``svhn`` and ``stl10`` load through torchvision's classes. With
``data.root`` empty they live in a user data folder (``$XDG_DATA_HOME/mihead/datasets/NAME``,
``~/.local/share/mihead/datasets/NAME`` by default) and are downloaded there on first use by
torchvision's own code, which checks the published md5; an explicit ``data.root`` is read as
given and downloaded into only with ``data.download = true``. ``data.verify = false`` skips the
md5 check for a rebuilt copy. ``cinic10`` and ``image_folder`` read image folders. Images are
uint8 [N, H, W, 3].
"""

from __future__ import annotations

from mihead import hookimpl
from mihead.contracts import Dataset
from mihead_vision_datasets.cifar import CIFAR100_20, CIFAR10Dataset
from mihead_vision_datasets.folders import CINIC10Dataset, ImageFolderDataset
from mihead_vision_datasets.stl10 import STL10Dataset
from mihead_vision_datasets.svhn import SVHNDataset


@hookimpl
def register_datasets() -> list[type[Dataset]]:
    return [CIFAR10Dataset, CIFAR100_20, SVHNDataset, STL10Dataset, CINIC10Dataset, ImageFolderDataset]
