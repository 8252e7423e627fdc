"""HICO-DET evaluation: the official mAP protocol, results-file I/O, the official MATLAB layouts."""

from hoi.evaluation.hico_det import (
    IOU_THRESHOLD,
    evaluate,
    known_object_images,
    known_object_images_from_labels,
    match_detections,
    recall_thresholds,
)
from hoi.evaluation.hoi_results import HOIResults, ResultsError
from hoi.evaluation.map_scores import SETTINGS, EvalResult, SettingResult

__all__ = [
    "ResultsError", "EvalResult", "HOIResults", "IOU_THRESHOLD", "SETTINGS", "SettingResult",
    "evaluate", "known_object_images", "known_object_images_from_labels", "match_detections",
    "recall_thresholds",
]
