"""Images as every command reads them (``masks``, ``synth``, strips, trees): 8-bit RGB, or one clear error."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sepl_tree.errors import InputError
from sepl_tree.files import MAX_PIXELS
from sepl_tree.images import load_image


def test_a_16_bit_greyscale_png_keeps_its_picture(tmp_path):
    """(PIL's convert("RGB") clips 16-bit values at 255: the picture would read as all white.)"""
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint16), (4, 1))
    Image.fromarray(grey * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = load_image(tmp_path / "deep.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 16, 3)
    assert np.array_equal(rgb[:, :, 0], grey.astype(np.uint8)) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])


def _png_header_claiming(path, width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12_000, 30_000])  # over the limit; over twice it (where PIL itself refuses)
def test_an_image_claiming_too_many_pixels_is_one_line_naming_it(tmp_path, side, recwarn):
    assert side * side > MAX_PIXELS
    _png_header_claiming(tmp_path / "bomb.png", side, side)
    with pytest.raises(InputError, match="more than the limit|not read: Image size") as info:
        load_image(tmp_path / "bomb.png")
    assert str(info.value).startswith(str(tmp_path / "bomb.png") + ": ")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("kind", ["broken link", "folder"])
def test_an_image_name_that_is_not_a_file_is_named_not_left_out(tmp_path, kind):
    from sepl_tree.images import find_images

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.jpg")
    if kind == "folder":
        (tmp_path / "b.jpg").mkdir()
    else:
        (tmp_path / "b.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(InputError, match="b.jpg: is (a folder|not a readable image file)"):
        find_images(tmp_path)
