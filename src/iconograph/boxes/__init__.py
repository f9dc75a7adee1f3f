"""Boxes: the ``Detections`` value object, IoU and NMS (torchvision.ops), COCO / Pascal VOC / YOLO
readers and writers. Their metrics (pycocotools) are :mod:`iconograph.evaluation.detections`."""

from iconograph.boxes.detections import Detections, box_iou, nms
from iconograph.boxes.formats import FORMATS, BoxDataset, ImageBoxes, image_size, read_boxes

__all__ = [
    "FORMATS",
    "BoxDataset",
    "Detections",
    "ImageBoxes",
    "box_iou",
    "image_size",
    "nms",
    "read_boxes",
]
