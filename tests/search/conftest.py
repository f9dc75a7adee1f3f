"""Fixtures for search and service tests: a small indexed collection and a real uvicorn server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import cifar_images

TOKEN = "test-token-0123456789abcdef"
LABELS = ("cat", "dog", "bird")


def copy_images(target: Path, classes=("cat", "dog"), per_class: int = 6) -> list[Path]:
    copied = []
    for path in cifar_images("test", classes, per_class):
        destination = target / path.parent.name / path.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, destination)
        copied.append(destination)
    return copied


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "photos"
    copy_images(root)
    return root


@pytest.fixture
def indexed(images, tiny_clip, tmp_path):
    """A collection 'demo' of 12 CIFAR images, tagged zero-shot with cat/dog/bird."""
    from iconograph import Embedder
    from iconograph.search import SearchCollection, TaggerConfig

    store = tmp_path / "store"
    embedder = Embedder(str(tiny_clip), store=str(store), workers=0, progress=False)
    collection = SearchCollection("demo", store)
    collection.index(images, embedder, tagger=TaggerConfig(LABELS, top_k=3))
    return collection, embedder


class Server:
    def __init__(self, app):
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(indexed, tiny_clip):
    """The real service on a free loopback port, serving the 'demo' collection."""
    from iconograph.service import ServiceConfig, create_app

    collection, _ = indexed
    app = create_app(
        ServiceConfig(token=TOKEN, store=collection.store, model=str(tiny_clip), max_upload_bytes=256 * 1024)
    )
    with Server(app) as running:
        running.collection = collection
        yield running
