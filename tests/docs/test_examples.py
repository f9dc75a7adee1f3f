"""Every example of the README and the documentation runs as written (tiny local models, small data).

The blocks of one page run in order in one folder, as a reader follows the page; see
``tests/docs/examples.py`` for the claims a block can make and the ``illustrative`` marker.
"""

from __future__ import annotations

import pytest

from tests.docs.examples import ROOT, command_wrapper, environment, extract, pages, run

PAGES = [page for page in pages() if any(block.runs for block in extract(page))]
MAX_ILLUSTRATIVE_SHARE = 0.10


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run_as_written(page, world):
    env = environment(world, world / ".hf-cache", command_wrapper(world / ".bin"))
    for block in extract(page):
        if block.runs:
            run(block, world, env)


def test_illustrative_blocks_stay_rare():
    blocks = [b for page in pages() for b in extract(page) if b.language in ("bash", "python")]
    illustrative = [b.name for b in blocks if b.illustrative]
    assert len(blocks) >= 40
    assert len(illustrative) <= MAX_ILLUSTRATIVE_SHARE * len(blocks), illustrative


def test_a_broken_example_fails(world):
    """The runner is not a rubber stamp: a README block broken on purpose fails, and so does a
    block whose claimed output is not written."""
    env = environment(world, world / ".hf-cache", command_wrapper(world / ".bin"))
    readme = [b for b in extract(ROOT / "README.md") if b.runs and "classify" in b.code][0]
    readme.code = readme.code.replace("--labels-file", "--labels-fil", 1)
    with pytest.raises(AssertionError, match="exit status 2"):
        run(readme, world, env)
    claims = extract(ROOT / "README.md")[0]
    claims.language, claims.illustrative, claims.code, claims.creates = "bash", False, "true\n", ["never.txt"]
    with pytest.raises(AssertionError, match="claims to write never.txt"):
        run(claims, world, env)
