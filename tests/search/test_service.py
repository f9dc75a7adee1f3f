"""The service, tested over HTTP against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from iconograph import Embedder, ZeroShotClassifier
from iconograph.service import load_or_create_token
from tests.search.conftest import LABELS, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client(server, auth: bool = True) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH if auth else {}, timeout=60)


def jpeg_bytes(path) -> bytes:
    return path.read_bytes()


def test_health_is_open_everything_else_needs_the_token(server):
    with client(server, auth=False) as http:
        assert http.get("/health").json() == {"status": "ok"}
        for method, url in [
            ("GET", "/api/collections"),
            ("GET", "/api/collections/demo/items"),
            ("GET", "/api/collections/demo/search?q=cat"),
            ("POST", "/api/collections/demo/reviews"),
            ("POST", "/api/classify"),
            ("GET", "/api/collections/demo/thumb?path=x"),
            ("GET", "/static/app.js"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/static/docs/swagger-ui-bundle.js"),
        ]:
            assert http.request(method, url).status_code == 401, url
        wrong = {"Authorization": "Bearer not-the-token"}
        assert http.get("/api/collections", headers=wrong).status_code == 401
        assert http.get("/api/collections", headers={"Authorization": TOKEN}).status_code == 401  # no scheme
        page = http.get("/")
        assert page.status_code == 401 and "access token" in page.text
        assert http.get("/?token=wrong").status_code == 401
        login = http.get(f"/?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
    with httpx.Client(base_url=server.url, cookies={"iconograph_token": TOKEN}) as browser:
        assert browser.get("/api/collections").status_code == 200
    with client(server) as http:
        assert http.get("/api/collections").status_code == 200
        assert "/api/classify" in http.get("/openapi.json").json()["paths"]
        docs = http.get("/docs").text
        assert "/static/docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()  # works offline
        assert http.get("/static/docs/swagger-ui-bundle.js").status_code == 200


def test_list_pages_and_filters(server):
    with client(server) as http:
        info = http.get("/api/collections/demo").json()
        assert info["images"] == 12 and set(LABELS) <= set(info["labels"])
        first = http.get("/api/collections/demo/items", params={"offset": 0, "limit": 5}).json()
        second = http.get("/api/collections/demo/items", params={"offset": 5, "limit": 5}).json()
        assert first["total"] == 12 and len(first["items"]) == 5 and len(second["items"]) == 5
        assert not {i["path"] for i in first["items"]} & {i["path"] for i in second["items"]}
        record = first["items"][0]
        assert [lab["label"] for lab in record["labels"]] and record["reviewed"] is False
        high = http.get("/api/collections/demo/items", params={"min_score": 0.45, "limit": 100}).json()
        assert all(i["top_score"] >= 0.45 for i in high["items"]) and high["total"] < 12
        assert http.get("/api/collections/nothing/items").status_code == 404


def test_search_text_image_and_similar(server, tiny_clip):
    collection = server.collection
    embedder = Embedder(str(tiny_clip), store=collection.store, workers=0)
    with client(server) as http:
        result = http.get("/api/collections/demo/search", params={"q": "a cat", "k": 5}).json()
        expected, _ = collection.search_text("a cat", embedder, k=5)
        assert result["mode"] == "exact"
        assert [h["path"] for h in result["hits"]] == [h.path for h in expected]
        np.testing.assert_allclose([h["score"] for h in result["hits"]], [h.score for h in expected], atol=1e-6)

        probe = result["hits"][2]["path"]
        files = {"file": ("probe.jpg", Path(probe).read_bytes(), "image/jpeg")}
        by_image = http.post("/api/collections/demo/search/image", files=files, data={"k": "3"}).json()
        assert by_image["hits"][0]["path"] == probe
        similar = http.get("/api/collections/demo/similar", params={"path": probe, "k": 3}).json()
        assert [h["path"] for h in similar["hits"]] == [h["path"] for h in by_image["hits"]]
        assert http.get("/api/collections/demo/search", params={"q": " "}).status_code == 422


def test_classify_upload_matches_the_python_api(server, tiny_clip, images):
    probe = sorted(images.rglob("*.jpg"))[0]
    with client(server) as http:
        response = http.post(
            "/api/classify",
            files={"file": ("probe.jpg", probe.read_bytes(), "image/jpeg")},
            data={"labels": "cat,dog,bird", "top_k": "2"},
        )
        assert response.status_code == 200, response.text
        got = response.json()
        bad = http.post("/api/classify", files={"file": ("x.jpg", b"not an image")}, data={"labels": "cat"})
        assert bad.status_code == 422 and "cannot read the uploaded image" in bad.json()["detail"]
    embedder = Embedder(str(tiny_clip), store=server.collection.store, workers=0)
    classifier = ZeroShotClassifier(["cat", "dog", "bird"], top_k=2).prepare(embedder)
    expected = classifier.predict(embedder.embed_images([probe]).vectors)[0]
    assert [x["label"] for x in got["labels"]] == [ls.label for ls in expected]
    np.testing.assert_allclose([x["score"] for x in got["labels"]], [ls.score for ls in expected], atol=1e-5)


def test_oversized_upload_is_refused_with_413(server):
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(big, "PNG")
    assert big.tell() > 256 * 1024  # the test server's limit
    with client(server) as http:
        response = http.post(
            "/api/classify", files={"file": ("big.png", big.getvalue(), "image/png")}, data={"labels": "cat"}
        )
        assert response.status_code == 413 and "limit" in response.json()["detail"]

        def chunks():  # no Content-Length: counted while it streams
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
            for _ in range(40):
                yield b"x" * 16384
            yield b"\r\n--b--\r\n"

        streamed = http.post(
            "/api/collections/demo/search/image",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
        assert http.get("/health").status_code == 200


def test_files_only_from_inside_the_collection_roots(server, images, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((images / "cat" / "0000.jpg").read_bytes())
    os.symlink(secret, images / "cat" / "escape.jpg")  # a link inside the root that leads out
    os.symlink(images / "cat" / "0001.jpg", images / "cat" / "inside-link.jpg")  # stays inside
    inside = images / "cat" / "0000.jpg"
    with client(server) as http:
        ok = http.get("/api/collections/demo/thumb", params={"path": str(inside)})
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(ok.content)).size == (32, 32)
        assert http.get("/api/collections/demo/image", params={"path": "cat/0000.jpg"}).content == inside.read_bytes()
        # made after indexing: inside the roots, but no item of the collection, so not served
        assert http.get("/api/collections/demo/image", params={"path": "cat/inside-link.jpg"}).status_code == 404
        refused = [
            str(images / "cat" / ".." / ".." / "secret.jpg"),
            "../secret.jpg",
            "cat/../../secret.jpg",
            str(secret),
            "/etc/passwd",
            str(images / "cat" / "escape.jpg"),
            "cat/escape.jpg",
        ]
        for path in refused:
            for endpoint in ("image", "thumb"):
                response = http.get(f"/api/collections/demo/{endpoint}", params={"path": path})
                assert response.status_code == 403, (endpoint, path, response.status_code)
        assert http.get("/api/collections/demo/image", params={"path": "cat/none.jpg"}).status_code == 404
        raw = httpx.get(f"{server.url}/api/collections/demo/image?path=..%2F..%2Fsecret.jpg", headers=AUTH)
        assert raw.status_code == 403


def test_reviews_validation_and_persistence(server):
    path = server.collection.items()[0].path
    with client(server) as http:
        saved = http.post("/api/collections/demo/reviews", json={"path": path, "label": "cat", "action": "accept"})
        assert saved.status_code == 201 and saved.json()["id"]
        boxed = {"path": path, "label": "eagle", "action": "add", "box": [1, 2, 20, 30]}
        assert http.post("/api/collections/demo/reviews", json=boxed).status_code == 201
        for bad in (
            {"path": path, "label": "cat", "action": "maybe"},
            {"path": path, "label": " ", "action": "accept"},
            {"path": path, "label": "x", "action": "add", "box": [5, 5, 1, 1]},
        ):
            assert http.post("/api/collections/demo/reviews", json=bad).status_code == 422
        missing = {"path": "/nowhere.jpg", "label": "cat", "action": "accept"}
        assert http.post("/api/collections/demo/reviews", json=missing).status_code == 404
        item = http.get("/api/collections/demo/item", params={"path": path}).json()
        decisions = {lab["label"]: (lab["decision"], lab["box"]) for lab in item["labels"]}
        assert decisions["cat"] == ("accept", None) and decisions["eagle"] == ("add", [1.0, 2.0, 20.0, 30.0])
        assert len(item["history"]) == 2
    # a fresh process-level view of the store sees them (committed, not cached)
    from iconograph.search import SearchCollection

    assert len(SearchCollection("demo", server.collection.store.root).reviews.all()) == 2


def test_concurrent_reviews_from_20_clients_lose_nothing(server):
    paths = [v.path for v in server.collection.items()]
    per_client = 10

    def one_client(n: int) -> list[str]:
        ids = []
        with client(server) as http:
            for i in range(per_client):
                body = {
                    "path": paths[(n + i) % len(paths)],
                    "label": f"c{n}-r{i}",
                    "action": "add",
                    "reviewer": f"u{n}",
                }
                response = http.post("/api/collections/demo/reviews", json=body)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
        return ids

    with ThreadPoolExecutor(20) as pool:
        acknowledged = [i for ids in pool.map(one_client, range(20)) for i in ids]
    with client(server) as http:
        stored = http.get("/api/collections/demo/reviews").json()
    assert len(acknowledged) == 200
    assert sorted(r["id"] for r in stored) == sorted(acknowledged)
    assert {r["label"] for r in stored} == {f"c{n}-r{i}" for n in range(20) for i in range(per_client)}


def test_token_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_or_create_token(path) == token
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ValueError, match="at least 16"):
        load_or_create_token(tmp_path / "short")
