"""Every generator, built by name from a config (timm's ``create_model`` is the model).

Training, export and inference all call ``build_generator``; a weights file records the config
it was saved from, so any trained model loads with ``vidcolor --model``. A config is a mapping
whose ``"arch"`` picks the network (the default one when absent: configs written before the
registry name no arch) and whose other keys are that network's own; keys it lacks take their
defaults, so files saved before a key existed still load as they were trained.

    build_generator({"arch": "unet", "channels": [16, 32, 64, 128, 256]})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vidcolor.models.base import Generator
from vidcolor.models.classification import ClassificationConfig, ClassificationUNet
from vidcolor.models.config import ArchConfig, ConfigError
from vidcolor.models.generator import ColorGenerator, GeneratorConfig
from vidcolor.models.pix2pix import Pix2PixConfig, Pix2PixUNet
from vidcolor.models.resnet import ResNetUNet, ResNetUNetConfig
from vidcolor.models.unet import DilatedUNet, DilatedUNetConfig, UNet, UNetConfig

__all__ = [
    "DEFAULT_ARCH",
    "Generator",
    "build_generator",
    "generator_names",
    "parse_config",
]

DEFAULT_ARCH = GeneratorConfig.ARCH

# name -> (config class, network class). The order is that of ``generator_names``.
_ARCHITECTURES: dict[str, tuple[type[ArchConfig], type[Generator]]] = {
    GeneratorConfig.ARCH: (GeneratorConfig, ColorGenerator),  # the shipped default
    UNetConfig.ARCH: (UNetConfig, UNet),  # seed 1
    Pix2PixConfig.ARCH: (Pix2PixConfig, Pix2PixUNet),  # seed 2
    ResNetUNetConfig.ARCH: (ResNetUNetConfig, ResNetUNet),  # seed 3
    ClassificationConfig.ARCH: (ClassificationConfig, ClassificationUNet),  # seed 4
    DilatedUNetConfig.ARCH: (DilatedUNetConfig, DilatedUNet),  # seed 5
}


def generator_names() -> list[str]:
    """Registered architectures, the default first."""
    return list(_ARCHITECTURES)


def unknown_architecture(arch: object, for_config: str | None = None) -> ConfigError:
    """The one message for a name that is not registered (or not the config's own)."""
    if isinstance(arch, str) and arch in _ARCHITECTURES and for_config is not None:
        return ConfigError(f"a {for_config} config cannot build architecture {arch!r}")
    return ConfigError(
        f"unknown generator architecture {arch!r} (known: {', '.join(_ARCHITECTURES)})"
    )


def parse_config(config: Mapping[str, Any] | ArchConfig) -> ArchConfig:
    """Check a config and fill in its defaults without building any layer (cheap).

    Raises ``ConfigError`` (a ``VidcolorError``, one line) for a config that is not a mapping,
    an unknown ``arch``, an unknown key or an ill-typed or out-of-range value.
    """
    if isinstance(config, ArchConfig):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"generator config must be a mapping, not {type(config).__name__}")
    arch = config.get("arch", DEFAULT_ARCH)
    if not isinstance(arch, str) or arch not in _ARCHITECTURES:
        raise unknown_architecture(arch)
    config_class, _ = _ARCHITECTURES[arch]
    return config_class.from_dict(config)


def build_generator(config: Mapping[str, Any] | ArchConfig) -> Generator:
    """The network ``config`` names, freshly initialised (``load_pretrained`` for ImageNet)."""
    parsed = parse_config(config)
    _, network = _ARCHITECTURES[parsed.arch]
    return network(parsed)  # type: ignore[call-arg]
