"""Images sized for a model: downscaled to the long-side cap, under the byte cap, small ones passed through."""

from __future__ import annotations

import io
import os

import PIL.Image
import pytest

from research_mcp.errors import BadInputError
from research_mcp.imaging import MAX_BYTES, MAX_SIDE_PX, fit_image


def encode(image: PIL.Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_a_small_image_is_passed_through_untouched() -> None:
    data = encode(PIL.Image.new("RGB", (640, 480), "white"))
    picture = fit_image(data)
    assert picture.data == data and picture.mime_type == "image/png" and not picture.resized


def test_a_large_plot_is_scaled_to_the_long_side_cap_keeping_its_shape() -> None:
    plot = PIL.Image.new("RGB", (3000, 1500), "white")
    plot.paste((31, 119, 180), (100, 700, 2900, 760))
    picture = fit_image(encode(plot))
    assert (picture.width, picture.height) == (MAX_SIDE_PX, MAX_SIDE_PX // 2)
    assert (picture.original_width, picture.original_height) == (3000, 1500) and picture.mime_type == "image/png"
    with PIL.Image.open(io.BytesIO(picture.data)) as back:
        assert back.size == (1200, 600) and back.getpixel((600, 300)) == (31, 119, 180)


def test_a_photograph_over_the_byte_cap_becomes_a_jpeg_under_it() -> None:
    noise = PIL.Image.frombytes("RGB", (1100, 1100), os.urandom(1100 * 1100 * 3))
    data = encode(noise)
    assert len(data) > MAX_BYTES
    picture = fit_image(data)
    assert picture.mime_type == "image/jpeg" and len(picture.data) <= MAX_BYTES and picture.data[:3] == b"\xff\xd8\xff"


def test_a_palette_page_is_a_png_of_few_colours() -> None:
    page = PIL.Image.new("RGB", (1700, 2200), "white")
    page.paste((0, 0, 0), (200, 200, 1500, 210))
    picture = fit_image(encode(page), palette=True)
    with PIL.Image.open(io.BytesIO(picture.data)) as back:
        assert back.mode == "P" and back.size == (927, 1200)


def test_what_is_not_an_image_or_too_many_pixels_is_refused_with_a_sentence() -> None:
    with pytest.raises(BadInputError, match="cannot be decoded"):
        fit_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    header = encode(PIL.Image.new("1", (9000, 9000)))
    with pytest.raises(BadInputError, match="too large to decode"):
        fit_image(header)
