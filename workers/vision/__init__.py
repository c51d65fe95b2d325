"""Server-side confirmation model: clip decoding, motion features, optional person detector."""

from workers.vision.frames import ClipDecodeError, SampledClip, sample_frames
from workers.vision.model import DEFAULT_MODEL_PATH, ClipScore, ConfirmationModel
from workers.vision.person import PersonDetector

__all__ = [
    "DEFAULT_MODEL_PATH",
    "ClipDecodeError",
    "ClipScore",
    "ConfirmationModel",
    "PersonDetector",
    "SampledClip",
    "sample_frames",
]
