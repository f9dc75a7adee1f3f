"""``iconograph learn COLLECTION``: fit a head on the collection's reviews and re-score the rest
(a thin shell over :func:`iconograph.search.active.learn_collection`)."""

from __future__ import annotations

from typing import Annotated

import typer

from iconograph.cli.common import StoreOpt, app, echo_stderr, user_errors


@app.command()
@user_errors
def learn(
    collection: Annotated[str, typer.Argument(help="The indexed collection whose reviews to learn from.")],
    head: Annotated[str, typer.Option("--head", help="Head kind (as train --head).")] = "logistic",
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds (fewer with few reviews).")] = 5,
    store: StoreOpt = None,
):
    """Fit a head on the reviewed labels (cached vectors), re-score unreviewed images, reorder the uncertainty queue."""
    from iconograph.search.active import learn_collection

    result = learn_collection(collection, store=store, head=head, folds=folds)
    echo_stderr(f"collection {collection!r}: {result.summary()}")
