"""Activation cache: checksums, atomic publish under real concurrent writers, LRU eviction."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import torch

from circuitdiff.cache import ActivationCache, cache_key
from circuitdiff.cache.store import MANIFEST, TMP_DIR


def _tensors(seed: int = 0, n: int = 1000) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {
        "acts": {"z": torch.randn(n, 16, generator=g), "mlp_out": torch.randn(n, 8, generator=g)},
        "stats": {"mean": torch.arange(5.0)},
    }


def _key(i: int = 0) -> str:
    return cache_key(model=f"m{i}", dataset="d", hooks=["z", "mlp_out"], dtype="float32", engine="t")


def test_key_depends_on_every_part_and_not_on_hook_order():
    base = dict(model="m", dataset="d", hooks=["a", "b"], dtype="float32", engine="1")
    k = cache_key(**base)
    assert cache_key(**{**base, "hooks": ["b", "a"]}) == k
    for field, value in [("model", "m2"), ("dataset", "d2"), ("hooks", ["a"]), ("dtype", "bfloat16"), ("engine", "2")]:
        assert cache_key(**{**base, field: value}) != k, field


def test_roundtrip_hit_and_miss_counts(tmp_path):
    cache = ActivationCache(tmp_path)
    assert cache.get(_key()) is None
    assert cache.put(_key(), _tensors(), {"clean_ld": 1.5})
    entry = cache.get(_key())
    assert entry is not None and entry.meta == {"clean_ld": 1.5}
    assert torch.equal(entry.tensors["acts"]["z"], _tensors()["acts"]["z"])
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_corrupted_entry_is_detected_discarded_and_recomputed(tmp_path):
    cache = ActivationCache(tmp_path)
    key = _key()
    cache.put(key, _tensors(), {})
    path = tmp_path / key / "acts.safetensors"
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF  # one flipped byte inside a tensor: safetensors would still parse it
    path.write_bytes(bytes(data))

    assert cache.get(key) is None  # a miss: the caller recomputes
    assert cache.stats.corrupt == 1
    cache.put(key, _tensors(), {"recomputed": True})
    # the recomputed entry replaced the corrupt one and now verifies
    again = cache.get(key)
    assert again is not None and again.meta == {"recomputed": True}
    assert not any((tmp_path / TMP_DIR).iterdir())


def test_truncated_file_and_garbage_manifest_are_misses(tmp_path):
    cache = ActivationCache(tmp_path)
    cache.put(_key(1), _tensors(), {})
    cache.put(_key(2), _tensors(), {})
    p = tmp_path / _key(1) / "stats.safetensors"
    p.write_bytes(p.read_bytes()[:10])
    (tmp_path / _key(2) / MANIFEST).write_text("{not json")
    assert cache.get(_key(1)) is None and cache.get(_key(2)) is None
    assert cache.stats.corrupt == 2
    assert not (tmp_path / _key(1)).exists() and not (tmp_path / _key(2)).exists()


def _writer(root: str, key: str, seed: int, barrier, q) -> None:
    cache = ActivationCache(root)
    big = _tensors(seed, n=200_000)  # ~16 MB: writes take long enough to overlap
    barrier.wait()
    q.put((os.getpid(), cache.put(key, big, {"writer": os.getpid()})))


def test_two_processes_writing_the_same_entry_leave_one_valid_entry(tmp_path):
    ctx = mp.get_context("spawn")
    for round_ in range(3):
        key = _key(100 + round_)
        barrier, q = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(str(tmp_path), key, round_, barrier, q)) for _ in range(2)]
        for p in procs:
            p.start()
        results = [q.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        published = [pid for pid, won in results if won]
        assert len(published) == 1, results  # exactly one rename wins
        cache = ActivationCache(tmp_path)
        entry = cache.get(key)
        assert entry is not None and cache.stats.corrupt == 0
        assert entry.meta["writer"] == published[0]
        assert torch.equal(entry.tensors["acts"]["z"], _tensors(round_, n=200_000)["acts"]["z"])
    entries = [d.name for d in tmp_path.iterdir() if d.name != TMP_DIR]
    assert len(entries) == 3
    assert not any((tmp_path / TMP_DIR).iterdir()), "the losing writer left its temp dir behind"


def test_lru_eviction_removes_least_recently_used_first(tmp_path):
    one = _tensors(n=1000)
    probe = ActivationCache(tmp_path / "probe")
    probe.put("x", one, {})
    size = probe.total_bytes()

    cache = ActivationCache(tmp_path / "c", max_bytes=int(3.5 * size))
    for i in range(3):
        cache.put(_key(i), one, {})
        time.sleep(0.01)
    cache.get(_key(0))  # key 0 becomes the most recently used
    time.sleep(0.01)
    cache.put(_key(3), one, {})  # 4 entries > 3.5: evict the LRU one = key 1
    assert cache.get(_key(1)) is None
    assert all(cache.get(_key(i)) is not None for i in (0, 2, 3))
    cache.put(_key(4), one, {})  # order of use now 0, 2, 3 (gets above), 4 -> evict 0
    assert cache.get(_key(0)) is None
    assert cache.stats.evictions == 2
    last_used = {k: lu for k, lu, _ in cache.entries()}
    assert set(last_used) == {_key(2), _key(3), _key(4)}
    manifest = json.loads((tmp_path / "c" / _key(4) / MANIFEST).read_text())
    assert set(manifest["files"]) == {"acts.safetensors", "stats.safetensors"}


def test_the_cache_follows_the_engine_settings(tmp_path):
    """Root, size and on/off come from the engine settings handed in, else the active ones; a directory
    given by the caller (the worker's <data_dir>/cache) wins over the root, never over the size."""
    from circuitdiff.cache.pipeline_cache import open_cache
    from circuitdiff.settings import EngineSettings, use

    settings = EngineSettings(cache_dir=tmp_path / "root", cache_max_bytes=1234)
    opened = open_cache(None, settings)
    assert opened.root == tmp_path / "root" and opened.max_bytes == 1234
    assert open_cache(None, EngineSettings(cache=False, cache_dir=tmp_path / "off")) is None
    assert open_cache(False, settings) is None
    assert open_cache(str(tmp_path / "given"), settings).root == tmp_path / "given"
    with use(settings):
        assert open_cache(True).root == tmp_path / "root"
        plain = ActivationCache()
        assert plain.root == tmp_path / "root" and plain.max_bytes == 1234
        assert ActivationCache(tmp_path / "x", max_bytes=5).max_bytes == 5
