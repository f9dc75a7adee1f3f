"""Help that teaches: examples at the end of every command's --help, --version, data-flow order."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from iconograph._version import __version__
from iconograph.cli import app, command
from iconograph.cli.help import COMMANDS, command_name


def invoke(*args: str):
    return CliRunner().invoke(command(), list(args), env={"COLUMNS": "200", "TERM": "dumb"})


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"iconograph {__version__}"


def test_top_level_help_lists_every_command_in_data_flow_order_one_line_each():
    output = invoke("--help").output
    registered = [command_name(info) for info in app.registered_commands]
    assert sorted(registered) == sorted(COMMANDS)
    listed = [name for name in re.findall(r"^│ ([a-z-]+) {2,}", output, re.M) if name in COMMANDS]
    assert listed == list(COMMANDS)
    for name, entry in COMMANDS.items():
        assert re.search(rf"^│ {name} +{re.escape(entry.line)} +│$", output, re.M), name
    panels = re.findall(r"╭─ ([A-Za-z ]+?) ─", output)
    assert panels == ["Options", "Read", "Embed", "Decide", "Use and check"]
    assert "--install-completion" not in output and "--show-completion" not in output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_ends_with_examples(name):
    output = invoke(name, "--help").output
    assert "Examples" in output
    tail = output[output.rindex("Examples") :]
    examples = [line.strip() for line in tail.splitlines() if line.strip().startswith("iconograph ")]
    assert 2 <= len(examples) <= 3, output
    assert all(example.startswith(f"iconograph {name}") for example in examples)


def test_evaluate_help_names_boxes_and_box_truth_formats():
    output = " ".join(invoke("evaluate", "--help").output.split())
    for words in ("Boxes and masks", "COCO", "VOC", "YOLO"):
        assert words in output


def test_split_seed_is_about_the_split_only():
    output = invoke("split", "--help").output
    line = next(line for line in output.splitlines() if "--seed" in line)
    assert "Seed of the split." in line and "fine-tuning" not in line
