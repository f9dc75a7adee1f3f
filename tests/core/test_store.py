import threading

import numpy as np

from iconograph.store import COMPACT_AFTER_FRAGMENTS, Store


def test_cache_appends_compact_and_keep_every_value(tmp_path):
    cache = Store(tmp_path).embedding_cache("image_test")
    for i in range(COMPACT_AFTER_FRAGMENTS + 2):
        cache.add([f"k{i}"], np.full((1, 4), i, np.float32))
    cache.compact()
    assert len(cache.dataset().get_fragments()) == 1
    found = cache.lookup([f"k{i}" for i in range(COMPACT_AFTER_FRAGMENTS + 2)] + ["missing"])
    assert len(found) == COMPACT_AFTER_FRAGMENTS + 2
    assert all((found[f"k{i}"] == i).all() for i in range(COMPACT_AFTER_FRAGMENTS + 2))


def test_concurrent_writers_lose_nothing(tmp_path):
    """Two caches on one table (as two processes would be) create and append at the same time."""
    store = Store(tmp_path)
    writers = [store.record_cache("records"), store.record_cache("records")]

    def write(cache, start):
        for i in range(start, start + 10):
            cache.add([f"k{i}"], [{"i": i}])

    threads = [threading.Thread(target=write, args=(cache, 10 * n)) for n, cache in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = store.record_cache("records").lookup([f"k{i}" for i in range(20)])
    assert found == {f"k{i}": {"i": i} for i in range(20)}
