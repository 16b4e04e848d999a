"""Temporal consistency: optical flow, the motion-compensated colour filter, shot cuts.

``smooth_stage`` is the film pipeline's stage between colourise and join; ``deflicker_video``
applies the same filter to a film another tool colourised; ``evaluate_videos`` scores a film's
temporal consistency against a reference. Names load on first use, so ``vidcolor.metrics`` can
use the flow helpers without pulling in the media libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vidcolor.options import RunOptions
    from vidcolor.temporal.smooth import TemporalSettings

_LAZY = {
    "TemporalFilter": "vidcolor.temporal.smooth",
    "TemporalSettings": "vidcolor.temporal.smooth",
    "smooth_stage": "vidcolor.temporal.stage",
    "chunk_reads": "vidcolor.temporal.stage",
    "deflicker_video": "vidcolor.temporal.deflicker",
    "evaluate_videos": "vidcolor.temporal.evaluate",
}


def temporal_settings(options: RunOptions) -> TemporalSettings:
    """The filter's settings for a run's options."""
    from vidcolor.temporal.smooth import TemporalSettings

    return TemporalSettings(strength=options.temporal_strength)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidcolor.temporal' has no attribute {name!r}")


__all__ = [*_LAZY, "temporal_settings"]
