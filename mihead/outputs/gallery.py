"""gallery.png: what one head's clusters look like.

One row per non-empty cluster, largest first: the cluster's number and size (with labels, its
matched class and purity, the share of its most common class), then its most confident images
(highest probability of that cluster first). Small images are enlarged by whole multiples with
nearest-neighbour sampling (an 8x8 digit becomes 64x64 pixels of 8x8 blocks), large ones shrunk,
grey ones shown grey. With labels, each image is framed green when its label is the cluster's
matched class and red when not (no frame in a cluster left unmatched). Past :data:`MAX_ROWS`
clusters, or a page of more than :data:`MAX_PIXELS`, the rows continue in gallery-2.png,
gallery-3.png, ... so that each file stays legible and a few MB at most.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mihead.evaluate import Evaluation
from mihead.files import write_atomically
from mihead.run_directory import gallery_file, gallery_page

__all__ = ["GalleryPage", "GalleryRow", "gallery_pages", "gallery_rows", "thumb_side", "write_gallery"]

THUMB = 64  # smaller images are enlarged to a whole multiple of their side of at least this
MAX_THUMB = 96  # larger images are shrunk to this side
MAX_ROWS = 25  # clusters per file
MAX_PIXELS = 2_500_000  # per file: about 7.5 MB raw, a few MB as PNG even for photographs
PAD = 4  # gap around each image; its frame is drawn in the gap
LABEL_WIDTH = 190
LINE = 17  # text line height
FONT_SIZE = 13
BACKGROUND = (255, 255, 255)
GAP = (235, 235, 235)
TEXT = (20, 20, 20)
MUTED = (100, 100, 100)
RIGHT = (40, 160, 60)
WRONG = (210, 40, 40)


@dataclasses.dataclass(frozen=True)
class GalleryRow:
    """One cluster of the gallery: ``images`` are indices into the split, most confident
    first; ``correct`` says for each whether its label is ``matched_class``. Without labels
    the last four are None; ``matched_class`` is "" for a cluster the matching leaves out."""

    cluster: int
    size: int
    images: tuple[int, ...]
    matched_class: str | None
    purity: float | None
    majority: str | None
    correct: tuple[bool, ...] | None


@dataclasses.dataclass(frozen=True)
class GalleryPage:
    """One file of the gallery and the rows drawn in it, top to bottom."""

    path: Path
    rows: list[GalleryRow]
    width: int
    height: int


def gallery_rows(evaluation: Evaluation, head: int, per_row: int) -> list[GalleryRow]:
    """Head ``head``'s non-empty clusters, largest first (ties by number), each with its
    ``per_row`` most confident images."""
    clusters = evaluation.assignments[head]
    confidence = evaluation.confidence[head]
    labels = evaluation.labels
    sizes = np.bincount(clusters, minlength=evaluation.heads[head].clusters)
    matching = evaluation.matching(head)
    rows = []
    for c in sorted(np.flatnonzero(sizes), key=lambda c: (-sizes[c], c)):
        members = np.flatnonzero(clusters == c)
        top = members[np.argsort(-confidence[members], kind="stable")[:per_row]]
        row = GalleryRow(int(c), int(sizes[c]), tuple(int(i) for i in top), None, None, None, None)
        if labels is not None:
            counts = np.bincount(labels[members])
            majority = int(counts.argmax())
            matched = matching.get(int(c))
            row = dataclasses.replace(
                row,
                matched_class="" if matched is None else evaluation.class_name(matched),
                purity=float(counts[majority] / len(members)),
                majority=evaluation.class_name(majority),
                correct=tuple(bool(labels[i] == matched) for i in top),
            )
        rows.append(row)
    return rows


def thumb_side(size: int) -> int:
    """The side an image of side ``size`` is shown at."""
    if size >= MAX_THUMB:
        return MAX_THUMB
    return size * math.ceil(THUMB / size)


def _geometry(per_row: int, thumb: int) -> tuple[int, int, int]:
    """Page width, row height and header height."""
    width = max(LABEL_WIDTH + per_row * (thumb + PAD) + PAD, 640)
    return width, max(thumb, 4 * LINE) + 2 * PAD, 3 * LINE + 2 * PAD


def _rows_per_page(per_row: int, thumb: int) -> int:
    width, row_height, header = _geometry(per_row, thumb)
    return max(1, min(MAX_ROWS, (MAX_PIXELS // width - header) // row_height))


def _page_path(run_dir: Path, page: int) -> Path:
    return run_dir / gallery_file(page)


def gallery_pages(run_dir: Path, rows: list[GalleryRow], per_row: int, image_side: int) -> list[GalleryPage]:
    """How ``rows`` are split into files of RUN_DIR (gallery.png, gallery-2.png, ...)."""
    thumb = thumb_side(image_side)
    per_page = _rows_per_page(per_row, thumb)
    width, row_height, header = _geometry(per_row, thumb)
    chunks = [rows[i : i + per_page] for i in range(0, len(rows), per_page)] or [[]]
    return [GalleryPage(_page_path(run_dir, p), chunk, width, header + len(chunk) * row_height) for p, chunk in enumerate(chunks, 1)]


@cache
def _font(bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans, which matplotlib ships; PIL's built-in font where it cannot be found."""
    from matplotlib import font_manager

    try:
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"), fallback_to_default=False)
        return ImageFont.truetype(path, FONT_SIZE)
    except (OSError, ValueError):
        return ImageFont.load_default()


def _clip(text: str, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    font = _font(False)
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _thumbnail(image: np.ndarray, thumb: int) -> Image.Image:
    """uint8 [H, W, C] (C = 1 or 3) as an RGB picture of ``thumb`` x ``thumb`` pixels."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    picture = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    enlarge = thumb >= max(image.shape[:2])
    return picture.resize((thumb, thumb), Image.Resampling.NEAREST if enlarge else Image.Resampling.LANCZOS)


def _row_text(row: GalleryRow) -> list[tuple[str, tuple[int, int, int]]]:
    lines = [(f"{row.size} image{'s' if row.size != 1 else ''}", TEXT)]
    if row.matched_class is not None:
        lines.append((f"matched class {row.matched_class}" if row.matched_class else "no matched class", TEXT if row.matched_class else MUTED))
        most = "" if row.majority == row.matched_class else f", mostly {row.majority}"
        lines.append((f"purity {row.purity:.2f}{most}", MUTED))
    return lines


def _draw(page: GalleryPage, images: np.ndarray, per_row: int, header: list[str]) -> Image.Image:
    thumb = thumb_side(images.shape[1])
    _, row_height, top = _geometry(per_row, thumb)
    canvas = Image.new("RGB", (page.width, page.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(header):
        draw.text((PAD, PAD + i * LINE), line, fill=TEXT if i == 0 else MUTED, font=_font(i == 0))
    for r, row in enumerate(page.rows):
        y = top + r * row_height
        draw.line([(0, y), (page.width, y)], fill=GAP)
        draw.text((PAD, y + PAD), f"cluster {row.cluster}", fill=TEXT, font=_font(True))
        for k, (text, colour) in enumerate(_row_text(row), 1):
            draw.text((PAD, y + PAD + k * LINE), _clip(text, LABEL_WIDTH - 2 * PAD), fill=colour, font=_font(False))
        for k, index in enumerate(row.images):
            x = LABEL_WIDTH + PAD + k * (thumb + PAD)
            if row.correct is not None and row.matched_class:
                frame = RIGHT if row.correct[k] else WRONG
                draw.rectangle([x - 2, y + PAD - 2, x + thumb + 1, y + PAD + thumb + 1], fill=frame)
            canvas.paste(_thumbnail(images[index], thumb), (x, y + PAD))
    return canvas


def _save(canvas: Image.Image, path: Path) -> None:
    write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG"))


def _header(evaluation: Evaluation, head: int, page: int, pages: int, done: int, shown: int, per_row: int) -> list[str]:
    result = evaluation.heads[head]
    chosen = f" (reported: {evaluation.selection})" if head == evaluation.selected else ""
    lines = [
        f"Head {head}{chosen}: {result.clusters_used} of {result.clusters} clusters hold images ({len(evaluation.ids)} images)",
        f"clusters {done + 1} to {done + shown} by size, file {page} of {pages}; each row: its {per_row} most confident images",
    ]
    if evaluation.labels is not None:
        lines.append("frame: green = the image's label is the cluster's matched class, red = another")
    return lines


def write_gallery(run_dir: Path, evaluation: Evaluation, images: np.ndarray, head: int, per_row: int) -> list[GalleryPage]:
    """RUN_DIR/gallery.png (and gallery-2.png, ... when it does not fit one file) of head
    ``head``'s clusters of ``images``, uint8 [N, H, W, C], the evaluated split's images; files
    of an earlier, longer gallery are removed. Returns the pages as drawn."""
    rows = gallery_rows(evaluation, head, per_row)
    pages = gallery_pages(run_dir, rows, per_row, images.shape[1])
    done = 0
    for p, page in enumerate(pages, 1):
        header = _header(evaluation, head, p, len(pages), done, len(page.rows), per_row)
        canvas = _draw(page, images, per_row, header)
        _save(canvas, page.path)
        done += len(page.rows)
    for stale in run_dir.iterdir():
        number = gallery_page(stale.name)
        if number is not None and number > len(pages):
            stale.unlink()
    return pages
