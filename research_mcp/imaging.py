"""Images sized for a model to look at: a page preview, a plot read back from the workspace.

A model's vision reads about 1.15 megapixels: larger images are scaled down by the client or the model's API
before it sees them, so pixels beyond that only cost bytes in the conversation. `MAX_SIDE_PX` = 1200 keeps a
US-letter or A4 page at about 930 x 1200 (1.1 MP, ~110 dpi), where 10 pt two-column text with its
superscripts still reads (checked by eye on the `twocolumn` template); at 1000 px the superscripts blur.
`MAX_BYTES` bounds what one image adds to the conversation (about 350,000 base64 characters at most).

Pages and plots are few-coloured: an adaptive 64-colour palette makes a page of text about a fifth the size of
full-colour PNG with no visible change; photographs fall back to JPEG. Pillow comes with matplotlib and is
imported on first use.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from research_mcp.errors import BadInputError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["MAX_BYTES", "MAX_SIDE_PX", "Picture", "fit_image"]

MAX_SIDE_PX = 1200
MAX_BYTES = 256 * 1024
_MAX_DECODED_PIXELS = 64_000_000
"""Larger images are refused before decoding (a 64 MP RGBA image is 256 MB in memory)."""
_PALETTE_COLOURS = 64


@dataclass(frozen=True, slots=True)
class Picture:
    data: bytes
    mime_type: Literal["image/png", "image/jpeg"]
    width: int
    height: int
    original_width: int
    original_height: int

    @property
    def resized(self) -> bool:
        return (self.width, self.height) != (self.original_width, self.original_height)


def fit_image(
    data: bytes, *, max_side_px: int = MAX_SIDE_PX, max_bytes: int = MAX_BYTES, palette: bool = False
) -> Picture:
    """`data` (PNG or JPEG) within `max_side_px` on its long side and `max_bytes`, as PNG (a palette of 64 colours
    when `palette`, or when full colour is over the byte cap) or else JPEG; an image already within both is
    returned as it is unless `palette` asks for the smaller encoding."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns from 89 MP on; the cap below is lower and says more
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
        width, height = image.size
        if width * height > _MAX_DECODED_PIXELS:
            raise BadInputError(
                f"The image is {width} x {height} pixels, too large to decode (over {_MAX_DECODED_PIXELS:,} pixels)."
            )
        kind: Literal["image/png", "image/jpeg"] = "image/jpeg" if image.format == "JPEG" else "image/png"
        if max(width, height) <= max_side_px and len(data) <= max_bytes and not palette:
            return Picture(data, kind, width, height, width, height)
        image.load()
    except PILImage.DecompressionBombError as exc:
        raise BadInputError(f"The image is too large to decode ({exc}).") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # Pillow's decoders raise these
        raise BadInputError(f"The image cannot be decoded ({exc}); is the file complete?") from exc
    side = max_side_px
    for _ in range(6):
        scaled = image.copy()
        scaled.thumbnail((side, side), PILImage.Resampling.LANCZOS)
        for encoded, mime in _encodings(scaled, kind, palette):
            if len(encoded) <= max_bytes:
                return Picture(encoded, mime, scaled.width, scaled.height, width, height)
        side = int(side * 0.75)
    raise BadInputError(f"The image cannot be brought under {max_bytes} bytes.")


def _encodings(image: Image, kind: str, palette: bool) -> Iterator[tuple[bytes, Literal["image/png", "image/jpeg"]]]:
    """Candidate encodings, best first; each is computed only when the one before was too big."""
    from PIL import Image as PILImage

    def png(picture: Image) -> bytes:
        out = io.BytesIO()
        picture.save(out, format="PNG", optimize=True)
        return out.getvalue()

    def jpeg(picture: Image) -> bytes:
        if picture.mode != "RGB":
            background = PILImage.new("RGB", picture.size, "white")
            rgba = picture.convert("RGBA")
            background.paste(rgba, mask=rgba.getchannel("A"))
            picture = background
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=85, optimize=True)
        return out.getvalue()

    def few_colours(picture: Image) -> bytes:
        rgb = picture if picture.mode in ("RGB", "RGBA") else picture.convert("RGBA")
        return png(rgb.quantize(_PALETTE_COLOURS, method=PILImage.Quantize.FASTOCTREE))

    if kind == "image/png":
        if not palette:
            yield png(image), "image/png"
        yield few_colours(image), "image/png"
    yield jpeg(image), "image/jpeg"
