"""HICO-DET evaluation: the official mAP protocol, results-file I/O, the official MATLAB layouts."""

from .detections import DetectionError, HOIDetections
from .hico_det import (
    IOU_THRESHOLD,
    evaluate,
    known_object_images,
    known_object_images_from_labels,
    match_detections,
    recall_thresholds,
)
from .result import SETTINGS, EvalResult, SettingResult

__all__ = [
    "DetectionError", "EvalResult", "HOIDetections", "IOU_THRESHOLD", "SETTINGS", "SettingResult",
    "evaluate", "known_object_images", "known_object_images_from_labels", "match_detections",
    "recall_thresholds",
]
