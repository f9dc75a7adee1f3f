"""End to end in Debian's chromium (Playwright): review from the "most uncertain first" queue,
press learn, see the queue reordered and the accuracy figure; reload and it is all still there."""

from __future__ import annotations

from tests.conftest import needs_chromium
from tests.search.conftest import TOKEN
from tests.search.test_browser import shoot

pytestmark = needs_chromium
REVIEWS = 6


def queue_paths(page) -> list[str]:
    cards = page.locator("[data-testid=card]")
    return [cards.nth(i).get_attribute("data-path") for i in range(cards.count())]


def badges(page) -> list[str]:
    found = page.locator("[data-testid=finding-badge]")
    return [found.nth(i).inner_text() for i in range(found.count())]


def test_queue_review_learn_and_reload(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    answers = {}
    page.on("dialog", lambda dialog: dialog.accept(answers["label"]))  # the relabel prompt

    page.goto(f"{server.url}/?token={TOKEN}")
    page.locator("[data-testid=card]").first.wait_for()
    page.select_option("[data-testid=queue]", "uncertain")
    page.wait_for_function("() => document.querySelector('[data-testid=status]').innerText.includes('in the queue')")
    before = queue_paths(page)
    assert len(before) == 12 and all("zero-shot" in b for b in badges(page))

    page.locator("[data-testid=card]").first.click()
    page.locator("[data-testid=detail]").wait_for(state="visible")
    reviewed = []
    for n in range(REVIEWS):
        path = page.locator("[data-testid=detail-path]").inner_text()
        assert path == before[n]  # the queue's order, one image after the other
        assert "margin" in page.locator("[data-testid=finding]").inner_text()
        answers["label"] = path.split("/")[-2]  # the truth: the folder
        page.keyboard.press("l")  # relabel
        page.wait_for_function(
            "(p) => document.querySelector('[data-testid=detail-path]').innerText !== p", arg=path
        )
        reviewed.append(path)
    shoot(page, tmp_path, "queue-detail")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=card]').length === 6")
    assert queue_paths(page) == before[REVIEWS:]  # still the zero-shot order

    page.click("[data-testid=learn]")
    page.wait_for_function("() => document.querySelector('[data-testid=accuracy]').innerText.includes('head accuracy')")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=finding-badge]')].every(b => b.innerText.includes('learned head'))"
    )
    accuracy = page.locator("[data-testid=accuracy]").inner_text()
    assert f"on {REVIEWS} reviews" in accuracy
    learned = queue_paths(page)
    assert sorted(learned) == sorted(before[REVIEWS:])
    margins = [float(b.split()[1]) for b in badges(page)]
    assert margins == sorted(margins)  # most uncertain first, by the learned head
    shoot(page, tmp_path, "queues")

    page.goto(f"{server.url}/?queue=uncertain")
    page.wait_for_function("() => document.querySelector('[data-testid=accuracy]').innerText.includes('head accuracy')")
    assert page.locator("[data-testid=accuracy]").inner_text() == accuracy
    assert queue_paths(page) == learned
    assert not errors, errors
    stored = {r.path: r.label for r in server.collection.reviews.all() if r.action in ("accept", "add")}
    assert stored == {p: p.split("/")[-2] for p in reviewed}
