"""What the torchvision-backed datasets share: where data lives, the error when it is absent,
and loading a copy whose checksums differ from the originals (``data.verify = false``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mihead.errors import DataError

T = TypeVar("T")


def data_root(root: str, name: str) -> Path:
    """``data.root``, or ``data/NAME`` below the working directory when it is empty."""
    return Path(root) if root else Path("data") / name


def require(name: str, files: Sequence[Path], download: bool) -> None:
    """A DataError naming the first absent file, unless the data is to be downloaded."""
    if download:
        return
    for path in files:
        if not path.exists():
            raise DataError(
                f"dataset {name!r}: {path} not found; put the data there (set data.root to its "
                "folder) or set data.download = true"
            )


def unverified(cls: type[T], **overrides: Callable[..., object]) -> type[T]:
    """A subclass of a torchvision dataset class that skips its md5 check (for rebuilt copies,
    e.g. CIFAR-10 rebuilt from the JPEG pack); presence is checked by :func:`require`.
    ``overrides`` replaces further methods that check checksums of their own."""
    methods = {"_check_integrity": lambda self: True, **overrides}
    return type(f"Unverified{cls.__name__}", (cls,), methods)


@contextmanager
def torchvision_errors(name: str, where: Path) -> Iterator[None]:
    """torchvision's RuntimeError (bad checksum) and OSError (failed download, unreadable
    file) as one-line DataErrors naming the folder."""
    try:
        yield
    except RuntimeError as exc:
        raise DataError(
            f"dataset {name!r}: {where}: the files' checksums do not match the originals "
            f"(torchvision: {exc}); for a rebuilt copy set data.verify = false"
        ) from None
    except OSError as exc:
        raise DataError(f"dataset {name!r}: {where}: {exc}") from None


def make(
    name: str,
    cls: type[T],
    verify: bool,
    where: Path,
    build: Callable[[type[T]], T],
    **overrides: Callable[..., object],
) -> T:
    """``build(cls)``, with the md5 checks skipped unless ``verify``, and errors as DataError."""
    with torchvision_errors(name, where):
        return build(cls if verify else unverified(cls, **overrides))
