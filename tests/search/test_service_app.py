"""The service's assembly, in process: errors answered by type, headers on a 500, the LRU, collection names."""

from __future__ import annotations

import io
import os
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from iconograph.reading.decode import DecodeError
from iconograph.search import CollectionError, NotInCollection, PathRefused, ReviewError
from iconograph.service import ServiceConfig, create_app
from iconograph.service.headers import SECURITY_HEADERS
from iconograph.service.lru import LRU
from tests.search.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path):
    return create_app(ServiceConfig(token=TOKEN, store=tmp_path / "store", model=str(tmp_path / "no-such-model")))


def test_library_errors_are_answered_by_their_type_not_their_text(app):
    raised = {
        "/refused": (PathRefused("not in collection"), 403),  # the text would say 404: the type decides
        "/missing": (NotInCollection("outside the collection's folders"), 404),
        "/collection": (CollectionError("no collection named x"), 400),
        "/review": (ReviewError("x"), 422),
        "/upload": (DecodeError("not an image"), 422),
    }
    for route, (error, _) in raised.items():
        app.add_api_route(route, _raiser(error))
    with TestClient(app) as http:
        for route, (error, status) in raised.items():
            response = http.get(route)
            assert response.status_code == status, route
            assert str(error) in response.json()["detail"]


def test_an_unavailable_model_is_a_503(app):
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG")
    with TestClient(app, headers=AUTH) as http:
        response = http.post("/api/classify", files={"file": ("x.png", image.getvalue())}, data={"labels": "cat"})
    assert response.status_code == 503 and response.json()["detail"].startswith("model unavailable")


def test_a_500_carries_the_security_headers(app):
    app.add_api_route("/boom", _raiser(RuntimeError("a bug")))
    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.get("/boom")
    assert response.status_code == 500
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_unknown_and_malformed_collection_names_are_404(app):
    with TestClient(app, headers=AUTH) as http:
        for name in ("nothing", "-dash-first", "a.b", "x" * 65, "*"):
            for endpoint in ("", "/items", "/reviews"):
                assert http.get(f"/api/collections/{name}{endpoint}").status_code == 404, (name, endpoint)
        assert http.get("/api/collections/nothing/search", params={"q": "   "}).status_code == 404


def test_lru_keeps_the_most_recently_used_and_computes_each_miss_once():
    cache: LRU[int] = LRU(2)
    calls = []

    def compute(key):
        calls.append(key)
        return key * 10

    assert cache.get(1, lambda: compute(1)) == 10
    cache.get(2, lambda: compute(2))
    cache.get(1, lambda: compute(1))  # a hit: 1 is now the most recent
    cache.get(3, lambda: compute(3))  # evicts 2
    cache.get(1, lambda: compute(1))
    cache.get(2, lambda: compute(2))
    assert calls == [1, 2, 3, 2] and len(cache) == 2

    shared: LRU[int] = LRU(8)
    threads = [
        threading.Thread(target=lambda i=i: [shared.get(k % 12, lambda k=k: k % 12) for k in range(i, i + 200)])
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(shared) == 8


def test_an_item_replaced_by_a_link_out_is_still_an_item_but_not_served(indexed, images, tmp_path):
    """SearchCollection.key maps the path to the item; the service refuses to read where the link leads."""
    collection, _ = indexed
    item = images / "cat" / "0000.jpg"
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(item.read_bytes())
    item.unlink()
    os.symlink(secret, item)
    assert collection.key("cat/0000.jpg") == str(item)
    app = create_app(ServiceConfig(token=TOKEN, store=collection.store))
    with TestClient(app, headers=AUTH) as http:
        assert http.get("/api/collections/demo/item", params={"path": "cat/0000.jpg"}).status_code == 200
        for endpoint in ("image", "thumb"):
            response = http.get(f"/api/collections/demo/{endpoint}", params={"path": "cat/0000.jpg"})
            assert response.status_code == 403 and secret.read_bytes() not in response.content


def _raiser(error: Exception):
    def endpoint():
        raise error

    return endpoint
