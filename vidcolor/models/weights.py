"""Generator weights as safetensors: tensors plus the config that rebuilds the network."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from vidcolor.atomic import atomic_output
from vidcolor.errors import VidcolorError
from vidcolor.models.generator import ColorGenerator, GeneratorConfig


def save_generator(model: ColorGenerator, path: Path, info: dict[str, str] | None = None) -> None:
    """Write atomically: a crash mid-save never leaves a truncated weights file behind."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(model.config.to_dict())}
    metadata.update(info or {})
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (OSError, SafetensorError) as exc:
        raise VidcolorError(f"cannot read model weights {path}: {exc}") from exc


def load_generator(path: Path) -> ColorGenerator:
    metadata = read_metadata(path)
    config = GeneratorConfig.from_dict(json.loads(metadata.get("config", "{}")))
    model = ColorGenerator(config)
    try:
        model.load_state_dict(load_file(str(path)))
    except (RuntimeError, SafetensorError) as exc:
        raise VidcolorError(f"model weights {path} do not fit {config.arch}: {exc}") from exc
    return model.eval()
