"""Issue 8, the service: what it serves, the headers it sends, the inputs it takes, one path rule.

Over HTTP against a real uvicorn server on 127.0.0.1, as a browser or a script meets it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from iconograph import Embedder
from iconograph.search import MAX_LABEL_CHARS, MAX_REVIEWER_CHARS, Review, ReviewError, SearchCollection
from iconograph.service import ServiceConfig, create_app
from iconograph.service.headers import SECURITY_HEADERS
from iconograph.service.limits import MAX_K, MAX_LABELS, MAX_PATH_CHARS, MAX_QUERY_CHARS
from tests.search.conftest import TOKEN, Server, copy_images

AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVIL_HTML = b"<!doctype html><script>fetch('/api/collections').then(r => r.text()).then(alert)</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="9" height="9"/></svg>'


def client(url: str, **kwargs) -> httpx.Client:
    return httpx.Client(base_url=url, headers=AUTH, timeout=60, **kwargs)


def assert_not_served(http: httpx.Client, collection: str, path: str, secret: bytes) -> None:
    for endpoint in ("image", "thumb"):
        response = http.get(f"/api/collections/{collection}/{endpoint}", params={"path": path})
        assert response.status_code in (403, 404), (endpoint, path, response.status_code)
        assert secret not in response.content, (endpoint, path)


# ---- 1. only indexed items, only as images ----------------------------------------------------


def test_only_indexed_images_are_served_and_typed_by_their_content(server, images):
    planted = {
        ".env": b"AWS_SECRET=hunter2-planted",
        "evil.html": EVIL_HTML,
        "x.svg": SVG,
        "notes.txt": b"planted notes",
        "fake.png": EVIL_HTML,  # an image name, HTML inside
    }
    for name, data in planted.items():
        (images / "cat" / name).write_bytes(data)
    item = images / "cat" / "0000.jpg"
    with client(server.url) as http:
        for name, data in planted.items():
            for path in (f"cat/{name}", str(images / "cat" / name)):
                assert_not_served(http, "demo", path, data)

        ok = http.get("/api/collections/demo/image", params={"path": str(item)})
        assert ok.status_code == 200 and ok.content == item.read_bytes()
        assert ok.headers["content-type"] == "image/jpeg" and ok.headers["x-content-type-options"] == "nosniff"

        # the type comes from the content, not the name: an item rewritten as PNG is served as PNG
        png = images / "cat" / "0001.jpg"
        buffer = io.BytesIO()
        Image.open(png).save(buffer, "PNG")
        png.write_bytes(buffer.getvalue())
        assert http.get("/api/collections/demo/image", params={"path": str(png)}).headers["content-type"] == "image/png"

        # an item whose file became HTML (or SVG) is refused, never served as a page
        for data in (EVIL_HTML, SVG):
            item.write_bytes(data)
            for endpoint in ("image", "thumb"):
                response = http.get(f"/api/collections/demo/{endpoint}", params={"path": str(item)})
                assert response.status_code == 415 and data not in response.content, endpoint


# ---- 2. a list file's folder is no root ---------------------------------------------------------


def test_list_file_in_the_home_folder_serves_its_images_and_nothing_else(tmp_path, tiny_clip):
    home = tmp_path / "home"
    photos = copy_images(home / "pics", classes=("cat",), per_class=2) + copy_images(home / "more", ("dog",), 1)
    token_file = home / ".iconograph-token"
    token_file.write_text(TOKEN + "\n")
    (home / "evil.html").write_bytes(EVIL_HTML)
    (home / "x.svg").write_bytes(SVG)
    listing = home / "list.csv"
    listing.write_text("path\n" + "".join(f"{p.relative_to(home)}\n" for p in photos))
    store = home / "store"
    embedder = Embedder(str(tiny_clip), store=str(store), workers=0, progress=False)
    collection = SearchCollection("listed", store)
    report = collection.index(listing, embedder)
    assert report.added == 3 and report.outside == []
    # the roots are the folders of the images, not the folder of the list file
    assert collection.roots == sorted({str(p.parent) for p in photos}) and str(home) not in collection.roots

    app = create_app(ServiceConfig(token=TOKEN, store=collection.store, model=str(tiny_clip)))
    with Server(app) as running, client(running.url) as http:
        for path in (photos[0], photos[2]):
            response = http.get("/api/collections/listed/image", params={"path": str(path)})
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        # relative to the roots, the images' own folders: pics/cat/0001.jpg
        assert http.get("/api/collections/listed/image", params={"path": "0001.jpg"}).content == photos[1].read_bytes()
        secrets = {
            token_file: TOKEN.encode(),
            home / "evil.html": EVIL_HTML,
            home / "x.svg": SVG,
            listing: listing.read_bytes(),
            store / "meta" / "search_collection_listed.json": b'"roots"',
        }
        for path, secret in secrets.items():
            for given in (str(path), os.path.relpath(path, photos[0].parent), path.name):
                assert_not_served(http, "listed", given, secret)


def test_links_out_of_a_folder_source_are_still_skipped_when_indexing(tmp_path, tiny_clip):
    root = tmp_path / "photos"
    copy_images(root, ("cat",), 2)
    outside = copy_images(tmp_path / "elsewhere", ("dog",), 1)[0]
    os.symlink(outside, root / "cat" / "link-out.jpg")
    collection = SearchCollection("walked", tmp_path / "store")
    report = collection.index(root, Embedder(str(tiny_clip), store=str(tmp_path / "store"), workers=0))
    assert report.added == 2 and report.outside == [str(root / "cat" / "link-out.jpg")]
    assert collection.roots == [str(root)]


# ---- 3. headers, cookie, login page -----------------------------------------------------------


def test_security_headers_on_every_response(server, images):
    item = str(images / "cat" / "0000.jpg")
    responses = []
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        responses += [
            anonymous.get("/health"),
            anonymous.get("/"),
            anonymous.get("/?token=wrong"),
            anonymous.get("/api/collections"),
            anonymous.get("/static/app.js"),
        ]
    with client(server.url) as http:
        responses += [
            http.get("/"),
            http.get("/static/app.js"),
            http.get("/static/style.css"),
            http.get("/docs"),
            http.get("/openapi.json"),
            http.get("/static/docs/swagger-ui-bundle.js"),
            http.get("/api/collections/nothing"),
            http.get("/no/such/route"),
            http.get("/api/collections/demo/image", params={"path": "/etc/passwd"}),
            http.get("/api/collections/demo/image", params={"path": item}),
            http.get("/api/collections/demo/thumb", params={"path": item}),
            http.get("/api/collections/demo/search", params={"k": 0, "q": "x"}),
            http.post("/api/classify", content=b"x" * (300 * 1024), headers={"Content-Type": "multipart/form-data"}),
        ]
    statuses = {r.status_code for r in responses}
    assert {200, 401, 403, 404, 413, 422} <= statuses
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, response.status_code, name)
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["content-security-policy"]


def test_cookie_is_secure_over_tls_and_the_login_page_escapes(server):
    from iconograph.service.routes.pages import login_page as _login_page

    with httpx.Client(base_url=server.url, timeout=60) as http:
        plain = http.get(f"/?token={TOKEN}", follow_redirects=False)
        assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
        # as behind a TLS proxy: uvicorn trusts X-Forwarded-Proto from 127.0.0.1 by default
        tls = http.get(f"/?token={TOKEN}", headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)
        cookie = tls.headers["set-cookie"].lower()
        assert tls.status_code == 303 and "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    page = _login_page("<script>alert(1)</script>")
    assert "<script>" not in page and "&lt;script&gt;" in page


# ---- 4. bounded inputs ------------------------------------------------------------------------


def test_out_of_bounds_inputs_are_refused_with_422_and_store_nothing(server):
    path = server.collection.items()[0].path
    good = {"path": path, "label": "cat", "action": "accept"}
    bad_reviews = [
        {**good, "label": "x" * (MAX_LABEL_CHARS + 1)},
        {**good, "label": "two\nlines"},
        {**good, "label": "bell\x07"},
        {**good, "label": ""},
        {**good, "reviewer": "r" * (MAX_REVIEWER_CHARS + 1)},
        {**good, "reviewer": "me\r\nX-Injected: 1"},
        {**good, "path": "/" + "p" * MAX_PATH_CHARS},
        {**good, "action": "maybe"},
        {**good, "action": "add", "box": [1, 2, 3]},
        {**good, "action": "add", "box": [1, 2, 3, 4, 5]},
        {**good, "action": "add", "box": [1, 2, "x", 4]},
        {**good, "action": "add", "box": [5, 5, 1, 1]},
        {**good, "label": 7},
    ]
    # JSON's NaN and Infinity literals (Python's json reads them): refused, not a 500
    raw_bodies = [
        json.dumps({**good, "action": "add", "box": [1, 2, float(value), 4]}) for value in ("nan", "inf", "-inf")
    ]
    with client(server.url) as http:
        for body in bad_reviews:
            response = http.post("/api/collections/demo/reviews", json=body)
            assert response.status_code == 422, (body, response.status_code)
            assert len(response.content) < 2000  # the refused input is not echoed back
        for raw in raw_bodies:
            response = http.post(
                "/api/collections/demo/reviews", content=raw, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422, (raw, response.status_code, response.text)
        assert http.get("/api/collections/demo/reviews").json() == []

        long_q = "a" * (MAX_QUERY_CHARS + 1)
        bad_queries = [
            ("search", {"q": long_q}),
            ("search", {"q": "cat", "k": 0}),
            ("search", {"q": "cat", "k": MAX_K + 1}),
            ("search", {"q": "cat", "mode": "bogus"}),
            ("search", {"q": "cat", "label": "l" * (MAX_LABEL_CHARS + 1)}),
            ("similar", {"path": "/" + "p" * MAX_PATH_CHARS}),
            ("item", {"path": "/" + "p" * MAX_PATH_CHARS}),
            ("image", {"path": "/" + "p" * MAX_PATH_CHARS}),
            ("thumb", {"path": "/" + "p" * MAX_PATH_CHARS}),
            ("items", {"min_score": "nan"}),
            ("items", {"max_score": "inf"}),
            ("items", {"label": "l" * (MAX_LABEL_CHARS + 1)}),
        ]
        for endpoint, params in bad_queries:
            response = http.get(f"/api/collections/demo/{endpoint}", params=params)
            assert response.status_code == 422, (endpoint, params, response.status_code)

        image = {"file": ("x.jpg", Path(path).read_bytes(), "image/jpeg")}
        bad_forms = [
            {"labels": "cat", "threshold": "nan"},
            {"labels": "cat", "threshold": "1.5"},
            {"labels": "cat", "threshold": "-0.1"},
            {"labels": "cat", "top_k": "0"},
            {"labels": "cat", "top_k": str(MAX_LABELS + 1)},
            {"labels": ",".join(f"l{i}" for i in range(MAX_LABELS + 1))},
            {"labels": "cat," + "x" * (MAX_LABEL_CHARS + 1)},
            {"labels": "cat", "templates": "bogus"},
        ]
        for form in bad_forms:
            response = http.post("/api/classify", files=image, data=form)
            assert response.status_code == 422, (form, response.status_code)

        at_limit = {**good, "label": "y" * MAX_LABEL_CHARS, "reviewer": "r" * MAX_REVIEWER_CHARS}
        assert http.post("/api/collections/demo/reviews", json=at_limit).status_code == 201
        assert len(http.get("/api/collections/demo/reviews").json()) == 1


def test_the_review_log_enforces_the_same_limits_for_python_users(indexed):
    collection, _ = indexed
    path = collection.items()[0].path
    for review in (
        Review(path, "x" * (MAX_LABEL_CHARS + 1), "add"),
        Review(path, "two\nlines", "add"),
        Review(path, "cat", "accept", reviewer="r" * (MAX_REVIEWER_CHARS + 1)),
        Review(path, "cat", "accept", reviewer="tab\there"),
        Review(path, "cat", "add", box=(0.0, 0.0, float("nan"), 5.0)),
        Review(path, "cat", "add", box=(0.0, 0.0, float("inf"), 5.0)),
    ):
        with pytest.raises(ReviewError):
            collection.review(review)
        with pytest.raises(ReviewError):
            collection.reviews.record(review)
    assert collection.reviews.count() == 0


# ---- 5. one rule for relative paths -----------------------------------------------------------


def test_relative_paths_name_the_same_image_on_every_endpoint(server, images, tmp_path, monkeypatch):
    decoy = tmp_path / "elsewhere"
    copy_images(decoy, ("dog",), 1)
    shutil.copy(decoy / "dog" / "0000.jpg", decoy / "dog" / "0001.jpg")
    (decoy / "cat").mkdir()
    shutil.copy(decoy / "dog" / "0000.jpg", decoy / "cat" / "0000.jpg")  # same name, other image
    monkeypatch.chdir(decoy)  # the server's working directory must not matter
    relative = "cat/0000.jpg"
    key = str(images / "cat" / "0000.jpg")
    with client(server.url) as http:
        item = http.get("/api/collections/demo/item", params={"path": relative})
        assert item.status_code == 200 and item.json()["path"] == key
        similar = http.get("/api/collections/demo/similar", params={"path": relative, "k": 1})
        assert similar.status_code == 200 and similar.json()["hits"][0]["path"] == key
        review = http.post("/api/collections/demo/reviews", json={"path": relative, "label": "cat", "action": "accept"})
        assert review.status_code == 201 and review.json()["path"] == key
        assert http.get("/api/collections/demo/item", params={"path": key}).json()["history"][0]["path"] == key
        image = http.get("/api/collections/demo/image", params={"path": relative})
        assert image.status_code == 200 and image.content == (images / "cat" / "0000.jpg").read_bytes()
        thumb = http.get("/api/collections/demo/thumb", params={"path": relative})
        assert thumb.status_code == 200
        for endpoint in ("item", "similar", "image", "thumb"):
            assert (
                http.get(f"/api/collections/demo/{endpoint}", params={"path": "../photos/cat/0000.jpg"}).status_code
                == 403
            )
            assert http.get(f"/api/collections/demo/{endpoint}", params={"path": "cat/none.jpg"}).status_code == 404
    assert server.collection.key(relative) == key == server.collection.key(key)


# ---- 6. no cross-site "simple" POST -----------------------------------------------------------


def test_a_cross_site_simple_post_of_a_review_is_refused(server):
    path = server.collection.items()[0].path
    body = json.dumps({"path": path, "label": "pwned", "action": "add"}).encode()
    # the cookie a browser would attach; text/plain and a typeless Blob need no CORS preflight
    with httpx.Client(base_url=server.url, cookies={"iconograph_token": TOKEN}, timeout=60) as browser:
        as_text = browser.post("/api/collections/demo/reviews", content=body, headers={"Content-Type": "text/plain"})
        assert 400 <= as_text.status_code < 500
        request = browser.build_request("POST", "/api/collections/demo/reviews", content=body)
        assert "content-type" not in request.headers
        assert 400 <= browser.send(request).status_code < 500
        form = browser.post("/api/collections/demo/reviews", data={"path": path, "label": "pwned", "action": "add"})
        assert 400 <= form.status_code < 500
        assert browser.get("/api/collections/demo/reviews").json() == []
