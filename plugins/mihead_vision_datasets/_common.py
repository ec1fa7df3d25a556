"""What the torchvision-backed datasets share: where data lives, fetching it on first use, the
error when it is absent or cannot be fetched, and loading a copy whose checksums differ from
the originals (``data.verify = false``)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mihead.distributed import current
from mihead.errors import DataError

T = TypeVar("T")


def datasets_home() -> Path:
    """Where datasets live when ``data.root`` is empty: ``$XDG_DATA_HOME/mihead/datasets``, or
    ``~/.local/share/mihead/datasets`` without that variable. Not the working directory, so a
    dataset is fetched once per user, wherever mihead is started from."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mihead" / "datasets"


def data_root(root: str, name: str) -> Path:
    """``data.root``, or ``NAME`` below :func:`datasets_home` when it is empty."""
    return Path(root) if root else datasets_home() / name


def fetch_absent(name: str, files: Sequence[Path], root: str, download: bool) -> bool:
    """Whether the data must be downloaded: when a file of ``files`` is absent and either
    ``data.root`` is empty (the default folder is mihead's own, filled on first use) or
    ``data.download`` is set. Absent otherwise: a DataError naming the first absent file."""
    absent = [path for path in files if not path.exists()]
    if not absent:
        return False
    if download or not root:
        return True
    raise DataError(
        f"dataset {name!r}: {absent[0]} not found; put the data there (set data.root to its "
        "folder), set data.download = true, or leave data.root empty to fetch it into "
        f"{datasets_home() / name}"
    )


def unverified(cls: type[T], **overrides: Callable[..., object]) -> type[T]:
    """A subclass of a torchvision dataset class that skips its md5 check (for rebuilt copies,
    e.g. CIFAR-10 rebuilt from the JPEG pack); presence is checked by :func:`fetch_absent`.
    ``overrides`` replaces further methods that check checksums of their own."""
    methods = {"_check_integrity": lambda self: True, **overrides}
    return type(f"Unverified{cls.__name__}", (cls,), methods)


@contextmanager
def torchvision_errors(name: str, where: Path) -> Iterator[None]:
    """torchvision's RuntimeError (bad checksum) and OSError (unreadable file) as one-line
    DataErrors naming the folder."""
    try:
        yield
    except RuntimeError as exc:
        raise DataError(
            f"dataset {name!r}: {where}: the files' checksums do not match the originals "
            f"(torchvision: {exc}); for a rebuilt copy set data.verify = false"
        ) from None
    except OSError as exc:
        raise DataError(f"dataset {name!r}: {where}: {exc}") from None


@contextmanager
def download_errors(name: str, where: Path, url: str) -> Iterator[None]:
    """A download that fails (no network, a checksum that differs from the published one) as
    one line saying so and where to put the files by hand; the files it began are removed."""
    existed = where.exists()
    before = set(where.rglob("*")) if existed else set()
    try:
        yield
    except (OSError, RuntimeError) as exc:
        for path in sorted(set(where.rglob("*")) - before, reverse=True):  # deepest first
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        if not existed:
            with contextlib.suppress(OSError):
                where.rmdir()
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"dataset {name!r}: the download into {where} failed ({reason}); without internet, copy "
            f"{url} (or what it unpacks to) into that folder, or set data.root to a folder holding the data"
        ) from None


def make(
    name: str,
    cls: type[T],
    verify: bool,
    where: Path,
    build: Callable[[type[T]], T],
    *,
    fetching: str = "",
    **overrides: Callable[..., object],
) -> T:
    """``build(cls)``, with the md5 checks skipped unless ``verify``, and errors as DataError.
    ``fetching`` is the URL that ``build`` downloads from (it passes ``download=True``; ""
    when nothing is fetched): announced in one line on stderr, checked against the published
    md5 whatever ``verify`` says (a download is of the originals), a failure one line saying
    where to put the files. torchvision's own lines, printed to stdout, are kept out of it
    (stdout carries results); its progress bar stays on stderr."""
    with torchvision_errors(name, where):
        if not fetching:
            return build(cls if verify else unverified(cls, **overrides))
        if current().is_main:
            print(f"mihead: dataset {name!r} is not in {where}: downloading {fetching}", file=sys.stderr, flush=True)
        with download_errors(name, where, fetching), contextlib.redirect_stdout(io.StringIO()):
            return build(cls)
