"""HICO-DET's files and schema: class metadata, annotation files and their validation, the official
.mat files, HAKE's re-release, images, the HDF5 caches (proposals, features), box utilities."""

from hoi.data.anno_mat import read_anno_bbox_mat, write_anno_bbox_mat, write_anno_mat
from hoi.data.annotations import (
    AnnotationError,
    GroundTruth,
    build_instances,
    check_schema,
    ground_truth_arrays,
    load_annotations,
    pair_counts,
    save_annotations,
)
from hoi.data.metadata import (
    NO_INTERACTION_VERB,
    NUM_HOIS,
    NUM_OBJECTS,
    NUM_VERBS,
    PERSON_OBJECT,
    HicoMetadata,
    hico_metadata,
)
from hoi.data.validation import Problem, validate_annotations

__all__ = [
    "AnnotationError", "GroundTruth", "HicoMetadata", "NO_INTERACTION_VERB", "NUM_HOIS",
    "NUM_OBJECTS", "NUM_VERBS", "PERSON_OBJECT", "Problem", "build_instances", "check_schema",
    "ground_truth_arrays", "hico_metadata", "load_annotations", "pair_counts",
    "read_anno_bbox_mat", "save_annotations", "validate_annotations", "write_anno_bbox_mat",
    "write_anno_mat",
]
