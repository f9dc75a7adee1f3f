"""End to end: Debian's chromium (headless, through Playwright) drives the review page on a real server.

Screenshots go to the test's tmp dir; set ICONOGRAPH_TEST_ARTIFACTS=DIR to keep copies.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import keep_artifact, needs_chromium
from tests.search.conftest import TOKEN

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
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    shoot(page, tmp_path, "grid")

    page.fill("[data-testid=search-input]", "a photo of a cat")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('[data-testid=status]').innerText.includes('results for')")
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
    page.wait_for_function("document.querySelector('[data-testid=decision]').innerText === 'accept'")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("x")  # remove the second
    page.wait_for_function("document.querySelectorAll('[data-testid=decision]')[1].innerText === 'remove'")
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
    page.wait_for_function("document.querySelectorAll('[data-testid=card]').length === 1")
    assert cards.first.get_attribute("data-path") == target
    assert not errors, errors

    stored = {(r.label, r.action) for r in server.collection.reviews.all()}
    assert stored == {(labels[0], "accept"), (labels[1], "remove"), ("whiskers", "add")}
