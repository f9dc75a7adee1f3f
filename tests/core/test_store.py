import pickle
import threading

import numpy as np

from iconograph.engine.store import COMPACT_AFTER_FRAGMENTS, Store


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


def test_writers_that_computed_the_same_keys_store_each_key_once(tmp_path):
    """Two runs that looked up an empty cache and then computed the same images (issue 8)."""
    store = Store(tmp_path)
    first, second = store.embedding_cache("image_same"), store.embedding_cache("image_same")
    keys = [f"k{i}" for i in range(50)]
    assert first.lookup(keys) == {} and second.lookup(keys) == {}
    assert first.add(keys[:30], np.ones((30, 4), np.float32)) == 30
    assert second.add(keys, np.full((50, 4), 2, np.float32)) == 20  # only the 20 the table lacks
    assert second.add(["x", "x", "k0"], np.zeros((3, 4), np.float32)) == 1  # repeats in one batch too
    table_keys = store.db.open_table("image_same").to_arrow().column("key").to_pylist()
    assert sorted(table_keys) == sorted([*keys, "x"])
    found = first.lookup(keys)
    assert all((found[k] == 1).all() for k in keys[:30]) and all((found[k] == 2).all() for k in keys[30:])


def test_concurrent_processes_store_each_key_once(tmp_path):
    """Four processes add overlapping key ranges at the same time: every key once."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from iconograph.engine.store import Store\n"
        "cache = Store(sys.argv[1]).embedding_cache('image_race')\n"
        "start = int(sys.argv[2])\n"
        "for i in range(start, start + 40, 4):\n"
        "    cache.add([f'k{j}' for j in range(i, i + 4)], np.ones((4, 2), np.float32))\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(s)]) for s in (0, 0, 20, 20)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0, 0]
    table_keys = Store(tmp_path).db.open_table("image_race").to_arrow().column("key").to_pylist()
    assert sorted(table_keys) == sorted(f"k{i}" for i in range(60))


def test_key_index_follows_appends_and_compaction_in_one_cache_object(tmp_path):
    """One cache object looks up, appends and compacts: the index stays right across all three."""
    cache = Store(tmp_path).embedding_cache("image_index")
    for i in range(COMPACT_AFTER_FRAGMENTS + 1):
        cache.add([f"k{i}"], np.full((1, 2), i, np.float32))
        assert (cache.lookup([f"k{i}"])[f"k{i}"] == i).all()
    cache.compact()
    cache.add(["k0", "late"], np.array([[-1, -1], [7, 7]], np.float32))  # k0 is kept, not replaced
    found = cache.lookup(["late", "k0", f"k{COMPACT_AFTER_FRAGMENTS}", "absent"])
    assert sorted(found) == sorted(["late", "k0", f"k{COMPACT_AFTER_FRAGMENTS}"])
    assert (found["k0"] == 0).all() and (found["late"] == 7).all()
    assert cache.count() == COMPACT_AFTER_FRAGMENTS + 2


def test_colliding_key_hashes_never_give_another_keys_value(tmp_path, monkeypatch):
    """Every key hashed to one value: the index only nominates rows, the stored key decides."""
    import iconograph.engine.store as store_module

    monkeypatch.setattr(store_module, "key_hashes", lambda keys: np.zeros(len(keys), np.int64))
    cache = Store(tmp_path).record_cache("collide")
    cache.add(["a", "b"], [{"v": "a"}, {"v": "b"}])
    cache.add(["b", "c"], [{"v": "b2"}, {"v": "c"}])
    assert cache.lookup(["c", "a", "zz"]) == {"a": {"v": "a"}, "c": {"v": "c"}}
    assert cache.lookup(["b"]) == {"b": {"v": "b"}}
    assert cache.count() == 3


def test_key_index_costs_sixteen_bytes_a_row(tmp_path):
    """The memory of a cached run's key lookup is two int64 arrays, not a dict of strings."""
    cache = Store(tmp_path).embedding_cache("image_many")
    keys = [f"{i:064x}" for i in range(20_000)]
    cache.add(keys, np.zeros((len(keys), 2), np.float32))
    fresh = Store(tmp_path).embedding_cache("image_many")
    assert len(fresh.lookup(keys[::997])) == len(keys[::997])
    index = fresh._index
    assert index.hashes.nbytes + index.offsets.nbytes == 16 * len(keys)


def test_fragments_written_elsewhere_are_invisible_until_one_commit_and_keep_each_key_once(tmp_path):
    """What ``--engine ray``'s actors do: write data files through a (pickled) writer; the driver commits."""
    cache = Store(tmp_path).embedding_cache("image_fragments")
    writer = pickle.loads(pickle.dumps(cache.fragment_writer()))
    vectors = {k: np.full(4, i, np.float32) for i, k in enumerate("abcde")}
    first = writer.write(["a", "b"], [vectors["a"], vectors["b"]])
    overlapping = writer.write(["b", "c"], [vectors["b"], vectors["c"]])  # a retried batch, say
    assert cache.dataset() is None  # written, not committed: nobody sees it

    assert cache.commit([first, overlapping]) == 3
    assert len(cache.dataset().versions()) == 1  # one commit made both visible
    assert sorted(cache.dataset().to_table(columns=["key"]).column("key").to_pylist()) == ["a", "b", "c"]

    later = writer.write(["c", "d", "e"], [vectors[k] for k in "cde"])  # "c" is in the table now
    assert cache.commit([later]) == 2 and len(cache.dataset().versions()) == 2
    assert cache.commit([writer.write(["e"], [vectors["e"]])]) == 0  # nothing new: no commit
    keys = Store(tmp_path).embedding_cache("image_fragments").dataset().to_table(columns=["key"]).column("key")
    assert sorted(keys.to_pylist()) == list("abcde")
    found = Store(tmp_path).embedding_cache("image_fragments").lookup(list("abcde"))
    assert all(np.array_equal(found[k], vectors[k]) for k in "abcde")
