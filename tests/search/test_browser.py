"""End to end: Debian's chromium (headless, through Playwright) drives the review page on a real server.

Screenshots go to the test's tmp dir; set ICONOGRAPH_TEST_ARTIFACTS=DIR to keep copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import keep_artifact, needs_chromium
from tests.search.conftest import TOKEN, Server, copy_images

pytestmark = needs_chromium


def shoot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screenshots" / f"{name}.png"
    page.screenshot(path=str(path))
    keep_artifact(path)
    return path


def decisions(page) -> dict[str, str]:
    rows = page.locator("[data-testid=label-row]")
    return {
        rows.nth(i).get_attribute("data-label"): rows.nth(i).locator("[data-testid=decision]").inner_text()
        for i in range(rows.count())
    }


# Predicates are written as functions: a bare expression is eval'ed by Playwright in the page,
# which the service's security policy (no 'unsafe-eval') blocks.


def test_browse_search_review_and_reload(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{server.url}/")
    assert "access token" in page.content()  # no token, no page
    page.goto(f"{server.url}/?token={TOKEN}")  # sets the cookie and redirects to the page
    cards = page.locator("[data-testid=card]")
    cards.first.wait_for()
    assert cards.count() == 12
    assert "12 images" in page.locator("[data-testid=status]").inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shoot(page, tmp_path, "grid")

    page.fill("[data-testid=search-input]", "a photo of a cat")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=status]').innerText.includes('results for')")
    assert "exact search" in page.locator("[data-testid=status]").inner_text()
    assert cards.count() == 12
    shoot(page, tmp_path, "search")

    target = cards.first.get_attribute("data-path")
    cards.first.click()
    page.locator("[data-testid=detail]").wait_for(state="visible")
    page.locator("[data-testid=label-row]").first.wait_for()
    labels = list(decisions(page))
    assert len(labels) == 3 and page.locator("[data-testid=detail-path]").inner_text() == target
    page.keyboard.press("a")  # accept the first (selected) label
    page.wait_for_function("() => document.querySelector('[data-testid=decision]').innerText === 'accept'")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("x")  # remove the second
    page.wait_for_function("() => document.querySelectorAll('[data-testid=decision]')[1].innerText === 'remove'")
    page.fill("[data-testid=add-label]", "whiskers")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=label-row][data-label=whiskers]")
    shoot(page, tmp_path, "detail")

    page.reload()
    cards.first.wait_for()
    page.locator(f"[data-testid=card][data-path='{target}']").click()
    page.locator("[data-testid=label-row][data-label=whiskers]").wait_for()
    after = decisions(page)
    assert after[labels[0]] == "accept" and after[labels[1]] == "remove" and after[labels[2]] == ""
    assert after["whiskers"] == "add"
    shoot(page, tmp_path, "after-reload")
    page.keyboard.press("Escape")
    page.locator("[data-testid=detail]").wait_for(state="hidden")

    page.select_option("[data-testid=label-filter]", "whiskers")  # label filter over reviewed labels
    page.wait_for_function("() => document.querySelectorAll('[data-testid=card]').length === 1")
    assert cards.first.get_attribute("data-path") == target
    assert not errors, errors

    stored = {(r.label, r.action) for r in server.collection.reviews.all()}
    assert stored == {(labels[0], "accept"), (labels[1], "remove"), ("whiskers", "add")}


# ---- issue 8: untrusted names and labels, and the security policy ------------------------------

EVIL_NAMES = ('"><svg onload=window.__pwned=1>.jpg', "<img src=x onerror=window.__pwned=1>.jpg")
EVIL_LABEL = '<img src=x onerror="window.__pwned=1">'
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""
INJECTED = "svg[onload], img[onerror], script:not([src]), [onload], [onerror]"


@pytest.fixture
def evil_server(tmp_path, tiny_clip):
    """A collection whose file names and labels are HTML with script in it."""
    from iconograph import Embedder
    from iconograph.search import SearchCollection, TaggerConfig
    from iconograph.service import ServiceConfig, create_app

    root = tmp_path / "evil"
    for source, name in zip(copy_images(tmp_path / "plain", ("cat",), 2), EVIL_NAMES):
        (root / "cat").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / "cat" / name)
    copy_images(root, ("dog",), 1)
    store = tmp_path / "store"
    collection = SearchCollection("evil", store)
    embedder = Embedder(str(tiny_clip), store=str(store), workers=0, progress=False)
    collection.index(root, embedder, tagger=TaggerConfig((EVIL_LABEL, "cat"), top_k=2))
    app = create_app(ServiceConfig(token=TOKEN, store=collection.store, model=str(tiny_clip)))
    with Server(app) as running:
        running.collection = collection
        running.root = root
        yield running


def test_html_in_file_names_and_labels_stays_text(evil_server, browser, tmp_path):
    target = str(evil_server.root / "cat" / EVIL_NAMES[0])
    with httpx.Client(base_url=evil_server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        body = {"path": target, "label": EVIL_LABEL + " added", "action": "add", "reviewer": "<b>me</b>"}
        assert http.post("/api/collections/evil/reviews", json=body).status_code == 201

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(WATCH_CSP)
    page.goto(f"{evil_server.url}/?token={TOKEN}")
    cards = page.locator("[data-testid=card]")
    cards.first.wait_for()
    assert cards.count() == 3
    names = [cards.nth(i).get_attribute("data-path") for i in range(3)]
    assert target in names
    page.locator("[data-testid=card]").nth(names.index(target)).click()
    page.locator("[data-testid=label-row]").first.wait_for()
    assert page.locator("[data-testid=detail-path]").inner_text() == target
    rows = page.locator("[data-testid=label-row]")
    shown = {rows.nth(i).get_attribute("data-label") for i in range(rows.count())}
    assert EVIL_LABEL + " added" in shown  # shown as text
    page.wait_for_function("() => document.getElementById('detail-image').complete")
    shoot(page, tmp_path, "evil-detail")
    page.keyboard.press("Escape")

    page.fill("[data-testid=search-input]", "<script>window.__pwned=1</script>")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=status]').innerText.includes('results for')")
    page.select_option("[data-testid=label-filter]", EVIL_LABEL)
    page.wait_for_timeout(500)

    assert page.evaluate("window.__pwned") is None
    assert page.locator(INJECTED).count() == 0
    assert page.evaluate("window.__csp") == []
    assert not errors, errors


def test_page_and_api_docs_run_under_the_security_policy(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(WATCH_CSP)
    response = page.goto(f"{server.url}/?token={TOKEN}")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.locator("[data-testid=card]").first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.evaluate("window.__csp") == []

    page.goto(f"{server.url}/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()  # Swagger UI started and read the schema
    assert page.locator(".swagger-ui .opblock").count() > 10
    assert "iconograph" in page.locator(".swagger-ui .info").inner_text()
    shoot(page, tmp_path, "docs")
    assert page.evaluate("window.__csp") == []
    assert not errors, errors

    page.goto(f"{server.url}/")  # after sign-in the login page's form is not shown; the grid is
    page.locator("[data-testid=card]").first.wait_for()
