"""Box datasets on disk: COCO JSON, Pascal VOC XML folders, YOLO txt folders (read and write).

A :class:`BoxDataset` is a list of :class:`ImageBoxes` (image path, size, :class:`Detections`)
plus the class list. Every writer is atomic per file; every reader gives one-line errors.

Layouts::

    COCO   one .json file: images (file_name relative to the file), categories, annotations
    VOC    a folder of .xml files, one per image (images found via <path>, <folder>/<filename>,
           ../JPEGImages or an explicit images folder)
    YOLO   ROOT/labels/<stem>.txt, ROOT/classes.txt (and data.yaml), images in ROOT/images
           (the writer links the original images there, so the folder is self-contained)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.etree import ElementTree as ET

from iconograph.boxes.detections import Detections
from iconograph.engine.files import atomic_write_text
from iconograph.errors import OptionError
from iconograph.reading.decode import is_image_path
from iconograph.reading.sources import SourceError, walk_images
from iconograph.reading.textfiles import read_json, read_lines, read_text

FORMATS = ("coco", "voc", "yolo")
EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageBoxes:
    """One image: its path, upright size in pixels, and its boxes."""

    path: str
    width: int
    height: int
    detections: Detections
    meta: dict = field(default_factory=dict, compare=False)


@dataclass
class BoxDataset:
    images: list[ImageBoxes]
    classes: tuple[str, ...]

    def __post_init__(self):
        self.classes = tuple(self.classes)
        self.images = [
            img
            if img.detections.classes == self.classes
            else replace(img, detections=img.detections.with_classes(self.classes))
            for img in self.images
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageBoxes]:
        return iter(self.images)

    @property
    def box_count(self) -> int:
        return sum(len(img.detections) for img in self.images)

    # ---- COCO -------------------------------------------------------------------------------

    def to_coco_dict(self, root: str | Path | None = None) -> dict:
        """A COCO dataset dict (image ids 1..n in order, category ids 1..k in class order).
        ``file_name`` is relative to ``root`` when given (the folder of the JSON file)."""
        category_ids = list(range(1, len(self.classes) + 1))
        images, annotations = [], []
        for image_id, img in enumerate(self.images, start=1):
            name = os.path.relpath(img.path, root) if root is not None else img.path
            images.append({"id": image_id, "file_name": name, "width": img.width, "height": img.height})
            annotations += img.detections.to_coco(image_id, category_ids, first_id=len(annotations) + 1)
        categories = [{"id": i, "name": name, "supercategory": ""} for i, name in zip(category_ids, self.classes)]
        return {"images": images, "annotations": annotations, "categories": categories}

    # ---- writers ----------------------------------------------------------------------------

    def write(self, destination: str | Path, format: str, **options) -> Path:
        writers = {"coco": self.write_coco, "voc": self.write_voc, "yolo": self.write_yolo, "png": self.write_png}
        if format not in writers:
            raise OptionError(f"unknown box format {format!r}; use one of {', '.join(writers)}")
        return writers[format](destination, **options)

    def write_coco(self, path: str | Path) -> Path:
        path = Path(path)
        data = self.to_coco_dict(root=path.parent.resolve())
        atomic_write_text(path, json.dumps(data, ensure_ascii=False))
        return path

    def write_png(self, folder: str | Path) -> Path:
        """Semantic label maps: ``<stem>.png`` per image (0 background, class ``i`` as ``i + 1``;
        where masks overlap the higher score wins) and ``classes.txt``. Needs masks."""
        from iconograph.boxes.masks import label_map, label_map_png
        from iconograph.engine.files import atomic_write_bytes

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for img, stem in zip(self.images, unique_stems(self.images)):
            d = img.detections
            if d.masks is None and len(d):
                raise OptionError(f"{img.path}: PNG label maps need masks; these are boxes only")
            labels = label_map(d.masks or (), d.class_id, d.scores, (img.height, img.width))
            atomic_write_bytes(folder / f"{stem}.png", label_map_png(labels))
        atomic_write_text(folder / "classes.txt", "".join(f"{name}\n" for name in self.classes))
        return folder

    def write_voc(self, folder: str | Path) -> Path:
        """One ``<stem>.xml`` per image (stems made unique), with ``<path>`` the image's absolute path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for img, stem in zip(self.images, unique_stems(self.images)):
            atomic_write_text(folder / f"{stem}.xml", voc_xml(img))
        return folder

    def write_yolo(self, root: str | Path, images: str = "link") -> Path:
        """``labels/<stem>.txt`` (an empty file for an image without boxes), ``classes.txt``,
        ``data.yaml``; ``images="link"`` (symbolic links, copies where links fail), ``"copy"`` or
        ``"none"`` (then pass the image folder to :func:`read_yolo`)."""
        if images not in ("link", "copy", "none"):
            raise OptionError("images must be 'link', 'copy' or 'none'")
        root = Path(root)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        for img, stem in zip(self.images, unique_stems(self.images)):
            atomic_write_text(root / "labels" / f"{stem}.txt", img.detections.to_yolo(img.width, img.height))
            if images != "none":
                _place_image(Path(img.path), root / "images" / f"{stem}{Path(img.path).suffix}", images)
        atomic_write_text(root / "classes.txt", "".join(f"{name}\n" for name in self.classes))
        names = "".join(f"  {i}: {json.dumps(name, ensure_ascii=False)}\n" for i, name in enumerate(self.classes))
        atomic_write_text(root / "data.yaml", f"path: .\ntrain: images\nval: images\nnames:\n{names}")
        return root


# ---- reading ------------------------------------------------------------------------------------


def read_boxes(
    source: str | Path, format: str | None = None, *, images: str | Path | None = None, classes=None
) -> BoxDataset:
    """Read a COCO JSON file, a VOC folder of XML files, or a YOLO folder (format by inspection)."""
    source = Path(source)
    format = format or detect_format(source)
    if format == "coco":
        return read_coco(source)
    if format == "voc":
        return read_voc(source, images=images, classes=classes)
    if format == "yolo":
        return read_yolo(source, images=images, classes=classes)
    raise OptionError(f"unknown box format {format!r}; use one of {', '.join(FORMATS)}")


def detect_format(source: Path) -> str:
    if source.is_file() and source.suffix.lower() == ".json":
        return "coco"
    if source.is_file() and source.suffix.lower() == ".xml":
        return "voc"
    if source.is_dir():
        if (source / "labels").is_dir():
            return "yolo"
        if any(source.glob("*.xml")) or (source / "Annotations").is_dir():
            return "voc"
    if not source.exists():
        raise SourceError(f"{source}: no such file or folder")
    raise SourceError(
        f"{source}: not a box dataset (a COCO .json, a folder of VOC .xml files, or a YOLO folder with labels/)"
    )


def read_coco(path: str | Path) -> BoxDataset:
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not {"images", "categories"} <= data.keys():
        raise SourceError(f"{path}: a COCO file needs 'images' and 'categories'")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    names = {c["id"]: str(c["name"]) for c in categories}
    classes = tuple(dict.fromkeys(names.values()))
    by_image: dict[int, list[dict]] = {}
    for annotation in data.get("annotations", []):
        if annotation.get("category_id") not in names:
            raise SourceError(f"{path}: annotation {annotation.get('id')} has an unknown category_id")
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    images = [
        ImageBoxes(
            str(_resolve(path.parent, img["file_name"])),
            int(img["width"]),
            int(img["height"]),
            Detections.from_coco(by_image.get(img["id"], []), names, classes, int(img["height"]), int(img["width"])),
            {"coco_id": img["id"]},
        )
        for img in data["images"]
    ]
    return BoxDataset(images, classes)


def read_voc(source: str | Path, *, images: str | Path | None = None, classes=None) -> BoxDataset:
    """A folder of VOC XML files (or one file); ``classes`` fixes the class order (default: sorted)."""
    source = Path(source)
    if source.is_dir() and (source / "Annotations").is_dir():
        source = source / "Annotations"
    files = sorted(source.glob("*.xml")) if source.is_dir() else [source]
    if not files:
        raise SourceError(f"{source}: no VOC .xml files")
    parsed = []
    for xml_file in files:
        try:
            root = ET.parse(xml_file).getroot()
            detections = Detections.from_voc(root.iter("object"))
            width, height = int(_child(root, "size/width")), int(_child(root, "size/height"))
        except (ET.ParseError, ValueError, OSError) as exc:
            raise SourceError(
                f"{xml_file}: not a readable VOC annotation ({' '.join(str(exc).split())[:200]})"
            ) from None
        parsed.append((xml_file, root, width, height, detections))
    if classes is None:
        classes = sorted({label for *_, detections in parsed for label in detections.labels})
    boxes = [
        ImageBoxes(
            str(_voc_image_path(xml_file, root, images)),
            width,
            height,
            detections.with_classes(classes),
            {"depth": int(root.findtext("size/depth") or 0) or None},
        )
        for xml_file, root, width, height, detections in parsed
    ]
    return BoxDataset(boxes, tuple(classes))


def read_yolo(root: str | Path, *, images: str | Path | None = None, classes=None) -> BoxDataset:
    """``root/labels/*.txt`` with images in ``images`` (default ``root/images``); image sizes are
    read from the image headers (EXIF orientation applied)."""
    root = Path(root)
    labels_dir = root / "labels" if (root / "labels").is_dir() else root
    image_dir = Path(images) if images else root / "images"
    classes = tuple(classes) if classes is not None else read_yolo_classes(root)
    if not image_dir.is_dir():
        raise SourceError(f"{image_dir}: YOLO images folder not found (pass images=...)")
    by_stem = {}
    for path in walk_images(image_dir):
        by_stem.setdefault(str(path.relative_to(image_dir).with_suffix("")), path)
    result = []
    for stem, image_path in sorted(by_stem.items()):
        label_file = labels_dir / f"{stem}.txt"
        text = read_text(label_file) if label_file.is_file() else ""
        width, height = image_size(image_path)
        try:
            detections = Detections.from_yolo(text, width, height, classes)
        except ValueError as exc:
            raise SourceError(f"{label_file}: {exc}") from None
        result.append(ImageBoxes(str(image_path), width, height, detections))
    return BoxDataset(result, classes)


def read_yolo_classes(root: Path) -> tuple[str, ...]:
    if (root / "classes.txt").is_file():
        return tuple(line.strip() for _, line in read_lines(root / "classes.txt") if line.strip())
    for name in ("data.yaml", "dataset.yaml"):
        if (root / name).is_file():
            import yaml

            names = (yaml.safe_load(read_text(root / name)) or {}).get("names")
            if isinstance(names, dict):
                return tuple(str(names[k]) for k in sorted(names))
            if isinstance(names, list):
                return tuple(map(str, names))
    raise SourceError(f"{root}: YOLO class names not found (classes.txt or data.yaml with 'names')")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the upright image, from the header only (no pixel decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the image size ({' '.join(str(exc).split())[:200]})") from None
    return (height, width) if orientation in TRANSPOSED_ORIENTATIONS else (width, height)


# ---- helpers ----------------------------------------------------------------------------------


def image_depth(path: str | Path) -> int:
    """Channels of the stored image (VOC's <depth>): 1 for greyscale, 3 for RGB; 3 when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return len(image.getbands())
    except OSError:
        return 3


def voc_xml(img: ImageBoxes) -> str:
    path = Path(img.path)
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = path.parent.name
    ET.SubElement(root, "filename").text = path.name
    ET.SubElement(root, "path").text = str(path.absolute())
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "iconograph"
    size = ET.SubElement(root, "size")
    for tag, value in (
        ("width", img.width),
        ("height", img.height),
        ("depth", img.meta.get("depth") or image_depth(path)),
    ):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    root.extend(img.detections.to_voc())
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def unique_stems(images: Sequence[ImageBoxes]) -> list[str]:
    """File stems for per-image files; repeated stems (same name in two folders) get ``-2``, ``-3``..."""
    seen: dict[str, int] = {}
    stems = []
    for img in images:
        stem = Path(img.path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _place_image(source: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if mode == "link":
        try:
            target.symlink_to(source.resolve())
            return
        except OSError:
            pass  # file systems without symbolic links: copy instead
    shutil.copy2(source, target)


def _voc_image_path(xml_file: Path, root: ET.Element, images: str | Path | None) -> Path:
    filename = (root.findtext("filename") or xml_file.with_suffix(".jpg").name).strip()
    folder = (root.findtext("folder") or "").strip()
    candidates = []
    if images:
        candidates.append(Path(images) / filename)
    if root.findtext("path"):
        candidates.append(Path(root.findtext("path").strip()))
    candidates += [
        xml_file.parent.parent / folder / filename if folder else None,
        xml_file.parent.parent / "JPEGImages" / filename,
        xml_file.parent.parent / "images" / filename,
        xml_file.parent / filename,
    ]
    candidates = [c for c in candidates if c is not None]
    found = next((c for c in candidates if c.is_file() and is_image_path(c)), None)
    return found or (Path(images) / filename if images else xml_file.parent / filename)


def _child(root: ET.Element, path: str) -> str:
    text = root.findtext(path)
    if text is None:
        raise ValueError(f"missing <{path}>")
    return text.strip()


def _resolve(folder: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate
