"""The bounds on every input of the service, in one place, as types the endpoints declare.

A value out of bounds is refused with 422 by FastAPI's validation before an endpoint runs, so
nothing is stored or computed for it. The label and reviewer limits are the library's own
(:class:`iconograph.search.ReviewLog` enforces them for Python users too); the README's service
section lists them all.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Form, Query
from pydantic import AfterValidator, Field, StringConstraints, TypeAdapter, ValidationError

from iconograph.classification.zeroshot import TEMPLATE_SETS, parse_label_list
from iconograph.search.reviews import MAX_LABEL_CHARS, MAX_REVIEWER_CHARS, ONE_LINE_PATTERN

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_QUERY_CHARS = 1000  # a search text (CLIP reads 77 tokens of it anyway)
MAX_LABELS = 500  # labels in one /api/classify request
MAX_LABELS_CHARS = MAX_LABELS * (MAX_LABEL_CHARS + 2)  # the comma-separated labels form field
MAX_K = 1000  # hits of one search
MAX_PAGE = 500  # items of one page
MIN_THUMB, MAX_THUMB = 16, 1024  # thumbnail size in pixels

SearchMode = Literal["auto", "exact", "ann"]

Label = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS, pattern=ONE_LINE_PATTERN)]
Reviewer = Annotated[str, StringConstraints(max_length=MAX_REVIEWER_CHARS, pattern=ONE_LINE_PATTERN)]
ItemPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]

_LABEL_LIST = TypeAdapter(Annotated[list[Label], Field(max_length=MAX_LABELS)])


def _label_list(text: str) -> str:
    """A comma-separated label list whose labels each pass as a :data:`Label`; the text unchanged."""
    try:
        _LABEL_LIST.validate_python(parse_label_list(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"labels{''.join(f'[{x}]' for x in first['loc'])}: {first['msg']}") from None
    return text


# query and form parameters
PathQuery = Annotated[str, Query(min_length=1, max_length=MAX_PATH_CHARS)]
SearchText = Annotated[str, Query(max_length=MAX_QUERY_CHARS), StringConstraints(strip_whitespace=True, min_length=1)]
LabelFilter = Annotated[str | None, Query(max_length=MAX_LABEL_CHARS)]
LabelFilterForm = Annotated[str | None, Form(max_length=MAX_LABEL_CHARS)]
ScoreQuery = Annotated[float | None, Query(allow_inf_nan=False)]
KQuery = Annotated[int, Query(ge=1, le=MAX_K)]
KForm = Annotated[int, Form(ge=1, le=MAX_K)]
LabelsForm = Annotated[
    str,
    Form(max_length=MAX_LABELS_CHARS, description="Comma-separated labels: zeus,eagle,patera"),
    AfterValidator(_label_list),
]
ThresholdForm = Annotated[float, Form(ge=0, le=1, allow_inf_nan=False)]
TopKForm = Annotated[int | None, Form(ge=1, le=MAX_LABELS)]
TemplatesForm = Annotated[Literal[TEMPLATE_SETS], Form(description="The prompt templates.")]
