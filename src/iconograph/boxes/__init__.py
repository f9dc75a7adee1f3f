"""Boxes: the ``Detections`` value object, IoU and NMS (torchvision.ops), COCO / Pascal VOC / YOLO
readers and writers, and COCO metrics (pycocotools)."""

from iconograph.boxes.detections import Detections, box_iou, nms
from iconograph.boxes.formats import FORMATS, BoxDataset, ImageBoxes, image_size, read_boxes
from iconograph.boxes.metrics import evaluate_detections, is_detection_file, read_detection_records

__all__ = [
    "FORMATS",
    "BoxDataset",
    "Detections",
    "ImageBoxes",
    "box_iou",
    "evaluate_detections",
    "image_size",
    "is_detection_file",
    "nms",
    "read_boxes",
    "read_detection_records",
]
