"""Index and search a collection, record reviews, export corrected labels.

>>> import iconograph as ig
>>> from iconograph.search import SearchCollection, TaggerConfig
>>> col = SearchCollection("coins")
>>> embedder = ig.Embedder("./my-clip")
>>> report = col.index("coins/", embedder, tagger=TaggerConfig(("eagle", "zeus")))
>>> hits, mode = col.search_text("an eagle on a thunderbolt", embedder, k=10, filters=["label=eagle"])
"""

from iconograph.search.collection import (
    DEFAULT_COLLECTION,
    CollectionError,
    IndexReport,
    ItemView,
    LabelView,
    NotInCollection,
    PathRefused,
    SearchCollection,
    TaggerConfig,
    list_collections,
    open_collection,
)
from iconograph.search.export import export_predictions, export_reviews
from iconograph.search.reviews import (
    ACTIONS,
    MAX_LABEL_CHARS,
    MAX_REVIEWER_CHARS,
    Action,
    Review,
    ReviewError,
    ReviewLog,
)
from iconograph.search.run import (
    SearchResult,
    export_collection,
    index_collection,
    search_collection,
    tune_collection,
)
from iconograph.search.tuning import Tuning, tune
from iconograph.search.vectors import DEFAULT_ANN_THRESHOLD, IndexState, QuerySettings, SearchHit, VectorTable

__all__ = [
    "ACTIONS",
    "MAX_LABEL_CHARS",
    "MAX_REVIEWER_CHARS",
    "Action",
    "DEFAULT_ANN_THRESHOLD",
    "DEFAULT_COLLECTION",
    "CollectionError",
    "IndexReport",
    "IndexState",
    "ItemView",
    "LabelView",
    "NotInCollection",
    "PathRefused",
    "QuerySettings",
    "Review",
    "ReviewError",
    "ReviewLog",
    "SearchCollection",
    "SearchHit",
    "SearchResult",
    "TaggerConfig",
    "Tuning",
    "VectorTable",
    "export_collection",
    "export_predictions",
    "export_reviews",
    "index_collection",
    "list_collections",
    "open_collection",
    "search_collection",
    "tune",
    "tune_collection",
]
