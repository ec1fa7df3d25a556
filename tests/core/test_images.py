"""mihead.images: finding image files and decoding every mode to the same uint8 arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from mihead.errors import DataError
from mihead.images import decode_image, decode_images, find_images


def _save(path: Path, image: Image.Image, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _mixed(folder: Path) -> dict[str, Path]:
    """One 12x10 file per mode, each of one flat colour whose 8-bit grey/RGB value is known."""
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128  # half-transparent red on white: 227, 127, 127
    la = np.stack([np.full((10, 12), 50, np.uint8), np.full((10, 12), 51, np.uint8)], axis=-1)
    palette = Image.new("P", (12, 10), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    clear = Image.new("P", (12, 10), 0)
    clear.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    return {
        "rgb": _save(folder / "rgb.png", Image.fromarray(np.full((10, 12, 3), (10, 20, 30), np.uint8))),
        "grey": _save(folder / "grey.png", Image.fromarray(np.full((10, 12), 100, np.uint8))),
        "grey16": _save(folder / "grey16.png", Image.fromarray(np.full((10, 12), 30000, np.uint16))),
        "int32": _save(folder / "int32.tif", Image.fromarray(np.full((10, 12), 65535, np.int32), mode="I")),
        "rgba": _save(folder / "rgba.png", Image.fromarray(rgba)),
        "la": _save(folder / "la.png", Image.fromarray(la, mode="LA")),
        "palette": _save(folder / "palette.png", palette),
        "palette_clear": _save(folder / "palette_clear.png", clear, transparency=0),
        "bilevel": _save(folder / "bilevel.png", Image.new("1", (12, 10), 1)),
        "cmyk": _save(folder / "cmyk.tif", Image.new("CMYK", (12, 10), (0, 255, 0, 0))),
    }


# Expected 8-bit values: 16-bit scaled by 255/65535 (30000 -> 117, not clipped to 255);
# alpha composited on white: 200 * 128/255 + 255 * 127/255 = 227.4, and 50 * 51/255 + 255 * 204/255.
EXPECTED_RGB = {
    "rgb": (10, 20, 30),
    "grey": (100, 100, 100),
    "grey16": (117, 117, 117),
    "int32": (255, 255, 255),
    "rgba": (227, 127, 127),
    "la": (214, 214, 214),
    "palette": (0, 0, 255),
    "palette_clear": (255, 255, 255),
    "bilevel": (255, 255, 255),
    "cmyk": (255, 0, 255),  # no cyan, full magenta, no yellow, no black
}


def test_every_mode_converts_to_the_expected_rgb(tmp_path: Path) -> None:
    files = _mixed(tmp_path)
    for name, path in files.items():
        pixels, _ = decode_image(path, 8, 3)
        assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
        assert tuple(pixels[4, 4]) == EXPECTED_RGB[name], name


def test_grey_files_decode_to_one_channel_and_auto_chooses_it(tmp_path: Path) -> None:
    files = _mixed(tmp_path)
    greys = [files[n] for n in ("grey", "grey16", "la", "bilevel")]
    one = decode_images(greys, 8, 1, workers=1)
    assert one.images.shape == (4, 8, 8, 1)
    assert one.images[:, 4, 4, 0].tolist() == [100, 117, 214, 255]
    auto = decode_images(greys, 8, 0, workers=1)
    np.testing.assert_array_equal(auto.images, one.images)
    mixed = decode_images(list(files.values()), 8, 0, workers=1)
    assert mixed.images.shape == (len(files), 8, 8, 3)  # one colour file: all three channels
    colour = decode_images([files["rgb"]], 8, 1, workers=1).images[0, 4, 4, 0]
    assert colour == round(10 * 0.299 + 20 * 0.587 + 30 * 0.114)  # ITU-R 601 luma


def test_resize_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    stripes = np.zeros((20, 40, 3), np.uint8)  # 40 wide: white between 8 black columns each side
    stripes[:, 8:32] = 255
    path = _save(tmp_path / "wide.png", Image.fromarray(stripes))
    pixels, _ = decode_image(path, 10, 3)  # 20x10 resized, the centre 10 columns kept: all white
    assert pixels.shape == (10, 10, 3) and pixels.min() == 255
    small = _save(tmp_path / "small.png", Image.fromarray(np.full((4, 4, 3), 9, np.uint8)))
    assert decode_image(small, 16, 3)[0].shape == (16, 16, 3)  # upscaled


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    tall = np.zeros((30, 10, 3), np.uint8)
    tall[:10] = 255  # white top third
    image = Image.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = _save(tmp_path / "turned.jpg", image, exif=exif, quality=95)
    pixels, _ = decode_image(path, 10, 1)
    assert pixels.shape == (10, 10, 1)
    # shown upright the image is 30 wide and 10 tall, the white third on the right; the
    # centre crop keeps the middle third, which was black
    assert pixels.max() < 40


def test_find_images_recurses_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ("b/z.png", "b/a/y.jpg", "a.png", ".hidden/x.png", "b/._x.png", "notes.txt"):
        _save(tmp_path / rel, Image.new("L", (4, 4))) if rel.endswith(("png", "jpg")) else (tmp_path / rel).write_text("x")
    found = find_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.png", "b/a/y.jpg", "b/z.png"]
    named = find_images([tmp_path / "notes.txt", tmp_path / "b", tmp_path / "b" / "z.png"])
    assert [p.name for p in named] == ["notes.txt", "y.jpg", "z.png"]  # as given, each once
    with pytest.raises(DataError, match="absent.png: no such file or folder"):
        find_images([tmp_path / "absent.png"])


def _corrupt_folder(folder: Path) -> tuple[list[Path], Path]:
    files = [_save(folder / f"{i}.png", Image.new("RGB", (6, 6), (i, i, i))) for i in range(5)]
    truncated = folder / "2.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    return files, truncated


def test_unreadable_file_is_a_data_error_naming_it_unless_skipped(tmp_path: Path) -> None:
    files, bad = _corrupt_folder(tmp_path)
    text = tmp_path / "3.png"
    text.write_text("not an image")
    for workers in (1, 2):
        with pytest.raises(DataError, match=f"cannot read image {bad}") as err:
            decode_images(files, 6, 3, workers=workers)
        assert "\n" not in str(err.value)
    kept = decode_images(files, 6, 3, skip_bad=True, workers=2)
    assert kept.paths == [files[0], files[1], files[4]]
    assert kept.images[:, 0, 0, 0].tolist() == [0, 1, 4]
    assert [p for p, _ in kept.skipped] == [bad, text] and all(reason for _, reason in kept.skipped)


def test_parallel_threads_and_processes_give_the_serial_result(tmp_path: Path) -> None:
    files = list(_mixed(tmp_path).values()) * 3
    serial = decode_images(files, 8, 3, workers=1)
    for processes in (False, True):
        parallel = decode_images(files, 8, 3, workers=2, processes=processes)
        np.testing.assert_array_equal(parallel.images, serial.images)
        assert parallel.paths == files


def test_progress_bar_reports_the_images(tmp_path: Path) -> None:
    files = list(_mixed(tmp_path).values())
    console = Console(record=True, width=80, force_terminal=False)
    decode_images(files, 8, 3, console=console)
    assert f"{len(files)}/{len(files)}" in console.export_text()


def test_an_image_past_max_pixels_is_refused_in_one_line_naming_the_setting(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    huge = tmp_path / "huge.png"
    Image.new("1", (15_000, 15_000)).save(huge)  # 225 M pixels: PIL's own guard refuses it without a hint
    big = tmp_path / "big.png"
    Image.new("1", (10_000, 10_000)).save(big)  # 100 M pixels: PIL's own guard warns in two lines
    with pytest.raises(DataError) as raised:
        decode_images([huge], 8, 1)
    assert str(raised.value) == (
        f"cannot read image {huge}: 15,000 x 15,000 pixels, more than data.max_pixels = 178,956,970 "
        "(a guard against decompression bombs); raise data.max_pixels to read it"
    )
    assert decode_images([huge], 8, 1, max_pixels=15_000**2).images.shape == (1, 8, 8, 1)
    assert decode_images([big], 8, 1).images.shape == (1, 8, 8, 1)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    skipped = decode_images([big, huge], 8, 1, max_pixels=10_000**2, skip_bad=True)
    assert skipped.paths == [big] and skipped.skipped[0][0] == huge
