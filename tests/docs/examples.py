"""The code blocks of the README and the documentation, and how to run them as a reader would.

Every ```bash and ```python block is an example that must run as written. Right after its closing
fence a block may state what it claims, and the test checks it:

    <!-- creates: FILE ... -->          files (or folders) the block leaves behind
    <!-- fields: FILE KEY ... -->       the first record of a JSONL file has these keys (CSV: the
                                        header; JSON: the top-level object)

A block that cannot run here (it needs a cluster, a server, a network) carries
``<!-- illustrative -->`` on the line before its fence; the tests keep that marker rare.
```console, ```json, ```text ... blocks are transcripts and outputs, shown, not run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LANGUAGES = ("bash", "python")
ILLUSTRATIVE = "<!-- illustrative -->"
FENCE = re.compile(r"^```(\w*)\s*$")
CLAIM = re.compile(r"^<!-- (creates|fields): (.+?) -->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    illustrative: bool = False
    creates: list[str] = field(default_factory=list)
    fields: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and not self.illustrative

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def extract(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, with its marker and the claims after it."""
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, language = i, opening.group(1)
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        block = Block(page, start + 1, language, "\n".join(body) + "\n")
        block.illustrative = start > 0 and lines[start - 1].strip() == ILLUSTRATIVE
        i += 1
        while i < len(lines) and (claim := CLAIM.match(lines[i])):
            kind, words = claim.group(1), claim.group(2).split()
            if kind == "creates":
                block.creates += words
            else:
                block.fields.append((words[0], words[1:]))
            i += 1
        blocks.append(block)
    return blocks


def run(block: Block, workdir: Path, env: dict, timeout: float = 600) -> None:
    """Run one block in ``workdir``; an AssertionError names the block and shows its output."""
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    elif block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        raise ValueError(f"{block.name}: a {block.language} block is not run")
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{block.name}: exit status {result.returncode}\n--- block\n{block.code}--- stdout\n"
            f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
    for name in block.creates:
        assert (workdir / name).exists(), f"{block.name}: claims to write {name}, which is missing"
    for name, keys in block.fields:
        found = first_record_keys(workdir / name)
        missing = [k for k in keys if k not in found]
        assert not missing, f"{block.name}: {name} lacks {missing} (has {sorted(found)})"


def first_record_keys(path: Path) -> set[str]:
    if path.suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as handle:
            return set(next(csv.reader(handle, delimiter="," if path.suffix == ".csv" else "\t")))
    if path.suffix == ".json":  # one JSON document (metrics, a COCO file)
        return set(json.loads(path.read_text(encoding="utf-8")))
    first = path.read_text(encoding="utf-8").splitlines()[0]  # JSONL: the first record
    return set(json.loads(first))


def command_wrapper(bin_dir: Path) -> Path:
    """``iconograph`` (and ``torchrun``) on PATH as this interpreter's ``-m iconograph`` (the
    package under test) and ``-m torch.distributed.run``, whether or not a venv is activated."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in (("iconograph", "iconograph"), ("torchrun", "torch.distributed.run")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        script.chmod(0o755)
    return bin_dir


def environment(workdir: Path, hub: Path, bin_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_CACHE=str(hub),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ICONOGRAPH_HOME=str(workdir / ".iconograph-home"),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )
    env.pop("ICONOGRAPH_STORE", None)
    return env
