"""load_image: every file a person may upload gives a usable RGB photo or a message that says what is wrong."""

import io
import os
import re
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from helpers import malformed_exif_jpeg
from oracle.cases import PIL_MODES, gradient_image, mode_images
from vithybrid.images import MAX_ASPECT, ImageError, load_image


def saved(tmp_path, image, name, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"plain text, not an image", "is not an image that can be read"),
    (b"<html><body>hi</body></html>", "is not an image that can be read"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "is not an image that can be read"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "is not an image that can be read"),
])
def test_files_that_are_not_images(tmp_path, content, message):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as error:
        load_image(path)
    assert "JPEG, PNG, WebP" in str(error.value) or "empty" in str(error.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path, fmt):
    buffer = io.BytesIO()
    gradient_image(300, 200).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_decompression_bombs_are_refused_with_the_limit(tmp_path):
    path = saved(tmp_path, gradient_image(300, 200), "big.png")
    with pytest.raises(ImageError, match=r"300x200 pixels .* above the limit of 0 megapixels"):
        load_image(path, max_pixels=50_000)
    header_bomb = tmp_path / "bomb.png"  # a PNG whose header claims 100000 x 100000 pixels
    data = bytearray(path.read_bytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # the header chunk's checksum
    header_bomb.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="megapixels"):
        load_image(header_bomb)


@pytest.mark.parametrize("mode", PIL_MODES)
def test_every_mode_becomes_rgb(tmp_path, mode):
    image = mode_images()[mode]
    path = saved(tmp_path, image, "image.tiff")
    photo = load_image(path)
    assert photo.mode == "RGB" and photo.size == image.size
    assert np.asarray(photo).std() > 5  # content survived, not a flat saturated picture


def test_transparency_goes_over_white_and_sixteen_bits_scale(tmp_path):
    clear = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    assert load_image(saved(tmp_path, clear, "clear.png")).getpixel((5, 5)) == (255, 255, 255)
    deep = Image.fromarray(np.full((10, 20), 65535, dtype="<u2"))
    assert load_image(saved(tmp_path, deep, "deep.png")).getpixel((5, 5)) == (255, 255, 255)
    half = Image.fromarray(np.full((10, 20), 32768, dtype="<u2"))
    assert load_image(saved(tmp_path, half, "half.png")).getpixel((5, 5)) == (128, 128, 128)


def test_exif_orientation_is_applied(tmp_path):
    image = gradient_image(300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = saved(tmp_path, image, "rotated.jpg", exif=exif)
    assert load_image(path).size == (200, 300)


def test_first_frame_of_animations_and_multipage_files(tmp_path):
    red, blue = Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))
    gif = saved(tmp_path, red, "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    tiff = saved(tmp_path, red, "pages.tiff", save_all=True, append_images=[blue])
    for path in (gif, tiff):
        r, g, b = load_image(path).getpixel((10, 10))
        assert r > 200 and b < 50


@pytest.mark.parametrize("fmt, name", [("WEBP", "a.webp"), ("BMP", "a.bmp"), ("ICO", "a.ico")])
def test_other_formats(tmp_path, fmt, name):
    photo = load_image(saved(tmp_path, gradient_image(64, 64), name, format=fmt))
    assert photo.mode == "RGB" and photo.size[0] > 0


def test_large_photos_are_downscaled_and_tiny_ones_kept(tmp_path):
    assert max(load_image(saved(tmp_path, gradient_image(3000, 1500), "big.jpg"), max_side=1024).size) == 1024
    assert load_image(saved(tmp_path, Image.new("RGB", (1, 1), (9, 9, 9)), "dot.png")).size == (1, 1)


@pytest.mark.parametrize("size", [(4000, 10), (10, 4000)])
def test_extreme_aspect_ratios_keep_the_center(tmp_path, size):
    photo = load_image(saved(tmp_path, gradient_image(*size), "strip.png"))
    assert max(photo.size) <= MAX_ASPECT * min(photo.size)


DECODER_CASES = Path(__file__).parent / "data" / "decoder"  # files that once broke the decoder (tests/fuzz)


def test_a_malformed_exif_tag_is_a_file_that_cannot_be_read(tmp_path):
    """Issue 26: exif_transpose raised struct.error on this EXIF, which no handler caught."""
    path = tmp_path / "exif.jpg"
    path.write_bytes(malformed_exif_jpeg())
    with pytest.raises(ImageError, match=r"^exif.jpg is truncated or corrupt and cannot be read \(.+\)\. Upload"):
        load_image(path)


@pytest.mark.parametrize("path", sorted(DECODER_CASES.iterdir()), ids=lambda p: p.name)
def test_every_file_that_once_broke_the_decoder_decodes_or_is_refused(path):
    """Each raised something else than ImageError, or (fuzz-2-1456.tiff, a 24 x 1572864 float strip) took 7 s."""
    try:
        photo = load_image(path)
    except ImageError as error:
        assert "Upload a photo" in str(error) or "Upload a smaller photo" in str(error)
    else:
        assert photo.mode == "RGB" and max(photo.size) <= MAX_ASPECT * min(photo.size)


@pytest.mark.parametrize("error", [struct.error("bad"), IndexError("tuple index out of range"), KeyError(7),
                                   ZeroDivisionError("division by zero"), TypeError("x"), RuntimeError("?")])
def test_whatever_the_decoder_raises_is_image_error_but_memory_error_goes_on(tmp_path, monkeypatch, error):
    path = saved(tmp_path, gradient_image(40, 30), "photo.png")
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda image: (_ for _ in ()).throw(error))
    with pytest.raises(ImageError, match="photo.png is truncated or corrupt and cannot be read"):
        load_image(path)
    for kind in (MemoryError, KeyboardInterrupt):
        monkeypatch.setattr(ImageOps, "exif_transpose", lambda image, kind=kind: (_ for _ in ()).throw(kind()))
        with pytest.raises(kind):
            load_image(path)


def test_special_files_are_named_for_what_they_are(tmp_path):
    """Issue 26: a FIFO, a device or a folder was 'There is no file X'; and a FIFO must not block the reader."""
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    cases = {tmp_path / "pipe.jpg": "is a named pipe (FIFO)", Path("/dev/null"): "is a character device",
             tmp_path / "folder.jpg": "is a folder", tmp_path / "gone.jpg": "There is no file gone.jpg"}
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.png"))
        cases[tmp_path / "sock.png"] = "is a socket"
        for path, message in cases.items():
            with pytest.raises(ImageError, match=re.escape(message)):
                load_image(path)
    link = tmp_path / "link.png"
    link.symlink_to(saved(tmp_path, gradient_image(40, 30), "target.png"))  # a link to a regular file is read
    assert load_image(link).size == (40, 30)
