"""Fixtures shared by every test: offline, isolated stores, tiny models built on the spot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
CIFAR_TEST = SHARED_DATA / "cifar10" / "test"
CIFAR_TRAIN = SHARED_DATA / "cifar10" / "train"
IMAGENET_SAMPLES = SHARED_DATA / "imagenet-samples"
RACCOON = SHARED_DATA / "raccoon"


@pytest.fixture(autouse=True)
def offline_and_isolated(tmp_path, monkeypatch):
    """No test reaches a model hub, and every test gets its own store and digest memo."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("ICONOGRAPH_HOME", str(tmp_path / "iconograph-home"))
    monkeypatch.delenv("ICONOGRAPH_STORE", raising=False)


@pytest.fixture(scope="session")
def ray_cluster():
    """One 2-CPU local Ray cluster for every Ray test (start-up is paid once); yields its address, which ``--ray-address`` joins from a CLI process."""
    ray = pytest.importorskip("ray")
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A randomly initialised CLIP (32 px images) saved with save_pretrained, tokenizer included."""
    from iconograph.testing import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


def run_cli(
    *args: str | os.PathLike,
    check: bool = False,
    env: dict | None = None,
    timeout: float = 600,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m iconograph ARGS`` the way a user runs the command (a fresh process)."""
    result = subprocess.run(
        [sys.executable, "-m", "iconograph", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"iconograph {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def cifar_images(split: str = "test", classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 5) -> list[Path]:
    root = SHARED_DATA / "cifar10" / split
    return [p for c in classes for p in sorted((root / c).glob("*.jpg"))[:per_class]]


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine is offline: no background connections
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)"
)


@pytest.fixture
def browser():
    """Headless Debian chromium driven by Playwright (never `playwright install`: it downloads)."""
    from playwright.sync_api import sync_playwright  # a dev dependency: missing means a broken install

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def keep_artifact(path: Path, name: str | None = None) -> None:
    """Copy a screenshot to $ICONOGRAPH_TEST_ARTIFACTS (when set) so it outlives the tmp dir."""
    keep = os.environ.get("ICONOGRAPH_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / (name or path.name))
