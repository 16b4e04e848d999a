"""Where the models shipped in the repository's ``engines/`` folder live once installed.

``pip install .`` copies ``engines/`` into the package as ``vidcolor/engine_files``; a source
checkout reads the folder in place.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "vidcolor-lite0-people-places.safetensors"


def engines_dir() -> Path:
    installed = Path(__file__).resolve().parents[1] / "engine_files"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "engines"


def default_weights() -> Path:
    return engines_dir() / DEFAULT_MODEL
