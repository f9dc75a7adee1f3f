"""How the command line presents itself: commands in data-flow order, one line each, in panels,
and two or three examples at the end of every command's ``--help``.

The examples use the files of the documentation's quickstart (``coins/``, ``iconography.txt``,
``truth.csv``); ``tests/cli/test_help.py`` checks that every command has some.
"""

from __future__ import annotations

from dataclasses import dataclass

import typer

READ, EMBED, DECIDE, CHECK = "Read", "Embed", "Decide", "Use and check"


@dataclass(frozen=True)
class CommandHelp:
    panel: str
    line: str  # the one line of the top-level help
    examples: tuple[str, ...]  # shell lines; a trailing "# ..." explains one


# In data-flow order: the top-level help lists the commands so.
COMMANDS: dict[str, CommandHelp] = {
    "convert-boxes": CommandHelp(
        READ,
        "Convert a box dataset between COCO, Pascal VOC and YOLO.",
        (
            "iconograph convert-boxes annotations.json --to yolo --out dataset/   # images linked into dataset/images",
            "iconograph convert-boxes voc/ --to coco --out annotations.json --images JPEGImages/",
        ),
    ),
    "split": CommandHelp(
        READ,
        "Images per train/val/test split for each --min-count.",
        (
            "iconograph split truth.csv --min-count 1 --min-count 10 --val 0.2 --test 0.2",
            "iconograph split truth.csv --min-count 10 --out split.csv   # path,labels,split",
        ),
    ),
    "embed": CommandHelp(
        EMBED,
        "Image embeddings: cached, optionally written out.",
        (
            "iconograph embed coins/ --out vectors.npz",
            "iconograph embed coins/ --model ./my-clip --out vectors.parquet   # a local model folder, offline",
        ),
    ),
    "index": CommandHelp(
        EMBED,
        "Embed, tag and index a collection for search and review.",
        (
            "iconograph index coins/ --collection coins --labels-file iconography.txt",
            "iconograph index coins/ --collection coins --regions masks.jsonl   # masks on the review page",
            "iconograph index --collection coins --target-recall 0.95   # tune the ANN search",
        ),
    ),
    "classify": CommandHelp(
        DECIDE,
        "Zero-shot labels or tags for every image.",
        (
            "iconograph classify coins/ --labels-file iconography.txt --out labels.jsonl",
            "iconograph classify coins/ --labels-file iconography.txt --multi-label --threshold 0.3 --out tags.jsonl",
            "iconograph classify photos/ --labels cat,dog --model ./my-clip --out preds.csv   # offline",
        ),
    ),
    "compare": CommandHelp(
        DECIDE,
        "Compare templates, models and few-shot probes.",
        (
            "iconograph compare coins/ --truth truth.csv --labels-file iconography.txt --templates none photo coins",
            "iconograph compare coins/ --truth truth.csv --labels-file iconography.txt --shots 1 2 4 --csv compare.csv",
        ),
    ),
    "train": CommandHelp(
        DECIDE,
        "Train a head (or fine-tune) into a model folder.",
        (
            "iconograph train coins/ --truth truth.csv --out coin-model/",
            "iconograph train coins/ --truth truth.csv --head svm --min-count 10 --out coin-model/ --report test.html",
            "iconograph train photos/ --head finetune --backbone timm:./my-timm --out tuned/ --epochs 5",
        ),
    ),
    "predict": CommandHelp(
        DECIDE,
        "Labels from a trained model folder, in classify's format.",
        (
            "iconograph predict new-coins/ --model coin-model/ --out tags.jsonl",
            "iconograph predict new-coins/ --model coin-model/ --top-k 1 --out tags.csv",
        ),
    ),
    "detect": CommandHelp(
        DECIDE,
        "Boxes for what text queries (or example images) name.",
        (
            'iconograph detect photos/ --queries "coin,eagle" --out boxes.jsonl',
            "iconograph detect photos/ --queries coin --format yolo --out dataset/   # images linked",
            "iconograph detect photos/ --queries coin --out boxes.json --annotate drawn/   # COCO, plus drawings",
        ),
    ),
    "segment": CommandHelp(
        DECIDE,
        "Masks for boxes (from detect or a box file), for words, or for everything (--auto).",
        (
            "iconograph segment photos/ --boxes boxes.jsonl --out masks.jsonl",
            "iconograph segment photos/ --queries coin --out masks.json   # COCO instance segmentation",
            "iconograph segment photos/ --queries coin,eagle --model facebook/sam3 --out masks.jsonl   # words",
        ),
    ),
    "caption": CommandHelp(
        DECIDE,
        "A caption for every image.",
        (
            "iconograph caption photos/ --out captions.jsonl",
            'iconograph caption photos/ --prompt "a photo of" --num-beams 3 --out captions.csv',
        ),
    ),
    "describe": CommandHelp(
        DECIDE,
        "Item texts from attributes, tags and captions.",
        (
            "iconograph describe coins/ --attributes attributes.csv --tags tags.jsonl --out texts.jsonl",
            "iconograph describe coins/ --attributes attributes.csv --engine llm "
            "--llm-url http://localhost:8000/v1 --llm-model NAME",
        ),
    ),
    "evaluate": CommandHelp(
        CHECK,
        "Metrics of labels, boxes or masks against the truth.",
        (
            "iconograph evaluate tags.jsonl --truth truth.csv --report report.html",
            "iconograph evaluate boxes.jsonl --truth annotations.json --json metrics.json   # COCO/VOC/YOLO truth",
        ),
    ),
    "report": CommandHelp(
        CHECK,
        "The HTML evaluation report with an embedding map.",
        (
            "iconograph report tags.jsonl --truth truth.csv --out report.html",
            "iconograph report tags.jsonl --truth truth.csv --out report.html --model coin-model/ --map pca",
        ),
    ),
    "search": CommandHelp(
        CHECK,
        "Nearest images to a text or an image.",
        (
            'iconograph search "an eagle" --collection coins --top 5',
            "iconograph search --image query.jpg --collection coins --filter label=eagle",
        ),
    ),
    "serve": CommandHelp(
        CHECK,
        "The review page and the HTTP API.",
        (
            "iconograph serve   # http://127.0.0.1:8000, token in the terminal",
            "iconograph serve --host 0.0.0.0 --port 8080 --token-file token.txt",
        ),
    ),
    "export": CommandHelp(
        CHECK,
        "Reviewed labels as truth, or corrected predictions.",
        (
            "iconograph export --reviews --collection coins --out labels.csv",
            "iconograph export --predictions --collection coins --out corrected.jsonl",
        ),
    ),
    "audit": CommandHelp(
        CHECK,
        "Duplicates, outliers and suspect labels.",
        (
            "iconograph audit coins/ --truth truth.csv --out audit/",
            "iconograph audit --collection coins --truth truth.csv --out audit/   # also feeds the review queues",
        ),
    ),
    "learn": CommandHelp(
        CHECK,
        "Learn from a collection's reviews; re-rank its queue.",
        (
            "iconograph learn coins",
            "iconograph learn coins --head svm --folds 3",
        ),
    ),
}


def epilog(examples: tuple[str, ...]) -> str:
    """The examples as Rich markup (square brackets escaped), one per line, under a heading."""
    escaped = (line.replace("[", "\\[") for line in examples)
    return "[bold]Examples[/bold]\n\n" + "\n".join(f"  [cyan]{line}[/cyan]" for line in escaped)


def present(app: typer.Typer) -> None:
    """Order, panel, one-line help and examples for every registered command."""
    for info in app.registered_commands:
        name = command_name(info)
        if name not in COMMANDS:
            raise RuntimeError(f"command {name!r} has no entry in iconograph.cli.help.COMMANDS")
        entry = COMMANDS[name]
        info.rich_help_panel = entry.panel
        info.short_help = entry.line
        info.epilog = epilog(entry.examples)
    order = list(COMMANDS)
    app.registered_commands.sort(key=lambda info: order.index(command_name(info)))


def command_name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")
