"""Open-vocabulary detection (OWL-ViT, OWLv2): text and example-image queries, class-wise NMS,
boxes in pixels of the upright image, JSONL / COCO / VOC / YOLO output, annotated images."""

from iconograph.detection.annotate import draw_detections, save_annotated
from iconograph.detection.owl import DEFAULT_DETECTOR, OwlDetector, QueryError, read_image_queries
from iconograph.detection.run import DetectionResult, DetectionWriter, detect, iter_detections, run_detection

__all__ = [
    "DEFAULT_DETECTOR",
    "DetectionResult",
    "DetectionWriter",
    "OwlDetector",
    "QueryError",
    "detect",
    "draw_detections",
    "iter_detections",
    "read_image_queries",
    "run_detection",
    "save_annotated",
]
