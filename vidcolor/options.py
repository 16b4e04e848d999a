"""One options object for a colourising run, shared by the API, the CLI and batch workers.

Everything a film or a still needs to know about *how* to colourise travels in ``RunOptions``,
so a new option (temporal smoothing, engine backend) is added here once, not to five signatures.
Kept free of heavy imports: the CLI builds it before torch or PyAV are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vidcolor.errors import VidcolorError

DEFAULT_RENDER_SIZE = 160
DEFAULT_BATCH = 8
# Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS, about 89.5 MP: a 600 dpi scan
# of a 16x20 inch print fits). Colourising holds several float32 copies of a picture, about
# 50 bytes a pixel, so this bounds one still or frame to roughly 4.5 GB of working memory.
DEFAULT_MAX_PIXELS = 89_478_485
# Stage queues: frames in flight between decode, colourise and encode.
DEFAULT_QUEUE_DEPTH = 16
# Temporal smoothing: 1 is the tuned default, 0 leaves each frame's own colour.
DEFAULT_TEMPORAL_STRENGTH = 1.0
MAX_TEMPORAL_STRENGTH = 4.0
# Frames a film chunk reads before its first frame (and past its last) for the temporal
# filter's state only: enough for what the filter remembers to fade below 0.01 ab units.
DEFAULT_TEMPORAL_WARMUP = 16

# x264 and x265 share these preset names.
X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class EncodeSettings:
    """How the colour film is encoded (the codec table lives in ``vidcolor.media.encode``)."""

    codec: str = "h264"
    crf: int | None = None
    preset: str = "medium"
    threads: int | None = None  # encoder threads; None: FFmpeg's choice (all cores)


@dataclass(frozen=True)
class RunOptions:
    """How to colourise: used for every file of a run."""

    render_size: int = DEFAULT_RENDER_SIZE
    batch_size: int = DEFAULT_BATCH
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_truncated: bool = False  # a film that ends before its header says: warn, not fail
    queue_depth: int = DEFAULT_QUEUE_DEPTH
    temporal: bool = True  # steady colour along the motion, reset at cuts (films only)
    temporal_strength: float = DEFAULT_TEMPORAL_STRENGTH
    temporal_warmup: int = DEFAULT_TEMPORAL_WARMUP
    # Decoder threads (and the encoder's, in ``encode``); None: FFmpeg's choice. A batch worker
    # of N threads sets N, so that N workers share a machine's cores instead of fighting.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.render_size < 32:
            raise VidcolorError(f"render size {self.render_size} is too small (at least 32)")
        if self.batch_size < 1:
            raise VidcolorError(f"batch size must be at least 1, not {self.batch_size}")
        if self.max_pixels < 1:
            raise VidcolorError(f"max pixels must be at least 1, not {self.max_pixels}")
        if self.queue_depth < 1:
            raise VidcolorError(f"queue depth must be at least 1, not {self.queue_depth}")
        if not 0 <= self.temporal_strength <= MAX_TEMPORAL_STRENGTH:
            raise VidcolorError(
                f"temporal strength must be 0..{MAX_TEMPORAL_STRENGTH:g}, "
                f"not {self.temporal_strength}"
            )
        if self.threads is not None and self.threads < 1:
            raise VidcolorError(f"threads must be at least 1, not {self.threads}")
        if self.temporal_warmup < 0:
            raise VidcolorError(f"temporal warm-up must be at least 0, not {self.temporal_warmup}")

    def with_(self, **changes: object) -> RunOptions:
        return replace(self, **changes)  # type: ignore[arg-type]
