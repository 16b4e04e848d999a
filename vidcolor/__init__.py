"""vidcolor: colourise black-and-white films, photos and archives.

The API is imported on first use, so ``import vidcolor`` (and ``vidcolor --help``) load
neither torch nor the media libraries.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# In a source checkout the training code sits in the top-level train/ folder, which an install
# places at vidcolor/train: let ``vidcolor.train`` resolve there too (``python -m
# vidcolor.train.fit`` or ``vidcolor train`` from the repository root).
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "setup.cfg").is_file() and (_CHECKOUT / "train" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # type: ignore[name-defined]  # noqa: F821

_API = {
    "colorize": "vidcolor.api",
    "colorize_array": "vidcolor.api",
    "colorize_image": "vidcolor.api",
    "colorize_video": "vidcolor.api",
    "Result": "vidcolor.api",
    "RunOptions": "vidcolor.options",
    "EncodeSettings": "vidcolor.options",
    "VidcolorError": "vidcolor.errors",
}

__all__ = [
    "colorize",
    "colorize_array",
    "colorize_image",
    "colorize_video",
    "Result",
    "RunOptions",
    "EncodeSettings",
    "VidcolorError",
    "__version__",
]

if TYPE_CHECKING:
    from vidcolor.api import Result, colorize, colorize_array, colorize_image, colorize_video
    from vidcolor.errors import VidcolorError
    from vidcolor.options import EncodeSettings, RunOptions


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'vidcolor' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
