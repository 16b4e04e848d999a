"""vidcolor: colourise black-and-white films, photos and archives."""

from __future__ import annotations

__version__ = "0.1.0"

from vidcolor.api import colorize, colorize_array, colorize_image, colorize_video  # noqa: E402
from vidcolor.errors import VidcolorError  # noqa: E402

__all__ = [
    "colorize",
    "colorize_array",
    "colorize_image",
    "colorize_video",
    "VidcolorError",
    "__version__",
]
