"""Activation store: round-trip, exact-once shuffling, bounded buffer, normalisation, errors
naming the file, crash mid-harvest then resume."""
import json

import numpy as np
import pytest

from jsparse.sae import store as st


def _items(n_items=23, d=8, seed=0):
    """Deterministic source items of varying length; row values encode (item, row) for checks."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_items):
        n = int(rng.integers(0, 17))
        x = rng.normal(size=(n, d)).astype(np.float32)
        x[:, 0] = i * 1000 + np.arange(n)  # unique tag per row
        ids = np.stack([np.full(n, i), np.arange(n), np.arange(n) + 100], 1).astype(np.int32)
        out.append((x, ids))
    return out


def _write(path, items, d=8, shard_rows=20, **kw):
    return st.harvest(path, list(range(len(items))), lambda i: items[i], d=d, shard_rows=shard_rows,
                      with_ids=True, model="m", layer=3, show_progress=False, **kw)


def test_round_trip_and_manifest(tmp_path):
    items = _items()
    s = _write(tmp_path / "s", items)
    x = np.concatenate([a for a, _ in items])
    ids = np.concatenate([b for _, b in items])
    got = np.concatenate(list(s.shards))
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(s.ids(), ids)
    assert s.num_tokens == x.shape[0] and s.complete and s.d == 8 and s.model == "m" and s.layer == 3
    assert all(sh.shape[0] == 20 for sh in s.shards[:-1])  # fixed-size shards, short last one
    # normalisation constant: unit mean squared norm of the stored rows (float64 reference)
    ms = np.mean(np.sum(x.astype(np.float64) ** 2, 1))
    np.testing.assert_allclose(s.mean_sq_norm, ms, rtol=1e-12)
    np.testing.assert_allclose(np.mean(np.sum((x * s.norm_scale) ** 2, 1)), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(s.rows(np.array([5, 0, 41])), x[[5, 0, 41]])


def test_float16_store(tmp_path):
    items = [(a / 1000.0, b) for a, b in _items()]  # tags fit float16 loosely: compare casts only
    s = _write(tmp_path / "s", items, dtype="float16")
    x = np.concatenate([a for a, _ in items])
    assert s.dtype == "float16"
    np.testing.assert_array_equal(np.concatenate(list(s.shards)), x.astype(np.float16))


@pytest.mark.parametrize("buffer_rows,block_rows,batch", [(16, 4, 5), (1000, 7, 3), (8, 8, 8)])
def test_shuffle_covers_every_row_once_per_epoch(tmp_path, buffer_rows, block_rows, batch):
    items = _items()
    s = _write(tmp_path / "s", items)
    n = s.num_tokens
    for epoch_seed in (0, 1):
        bs = list(s.batches(batch, seed=epoch_seed, buffer_rows=buffer_rows, block_rows=block_rows, drop_last=False))
        tags = np.concatenate([b[:, 0] for b in bs])
        assert sorted(tags.tolist()) == sorted(np.concatenate([a[:, 0] for a, _ in items]).tolist())
        assert all(b.shape == (batch, 8) for b in bs[:-1]) and len(tags) == n
    # two epochs in a row differ in order but each covers everything once
    two = list(s.batches(batch, seed=3, epochs=2, buffer_rows=buffer_rows, block_rows=block_rows, drop_last=False))
    t = np.concatenate([b[:, 0] for b in two])
    assert len(t) == 2 * n
    split = len(list(s.batches(batch, seed=3, buffer_rows=buffer_rows, block_rows=block_rows, drop_last=False)))
    e1 = np.concatenate([b[:, 0] for b in two[:split]])
    e2 = np.concatenate([b[:, 0] for b in two[split:]])
    assert sorted(e1.tolist()) == sorted(e2.tolist()) and not np.array_equal(e1, e2)


def test_shuffle_mixes_across_shards_with_bounded_buffer(tmp_path, monkeypatch):
    items = _items(60)
    s = _write(tmp_path / "s", items)
    # the largest array the iterator allocates is the fill buffer: buffer_rows plus < batch carried rows
    sizes = []
    real = np.empty

    def spy(shape, *a, **k):
        sizes.append(shape[0] if isinstance(shape, tuple) else shape)
        return real(shape, *a, **k)

    monkeypatch.setattr(np, "empty", spy)
    first = next(iter(s.batches(10, seed=0, buffer_rows=40, block_rows=10)))
    monkeypatch.setattr(np, "empty", real)
    assert sizes and 40 <= max(sizes) <= 40 + 10
    shard_of = np.searchsorted(np.cumsum([sh.shape[0] for sh in s.shards]), np.array(
        [np.flatnonzero(np.concatenate(list(s.shards))[:, 0] == t)[0] for t in first[:, 0]]), side="right")
    assert len(set(shard_of.tolist())) > 1  # one batch draws from several shards


def test_start_batch_skips_exactly(tmp_path):
    s = _write(tmp_path / "s", _items(40))
    kw = dict(seed=5, epochs=3, buffer_rows=30, block_rows=6)
    full = list(s.batches(7, **kw))
    for start in (0, 1, 9, len(full) - 1):
        tail = list(s.batches(7, start_batch=start, **kw))
        assert len(tail) == len(full) - start
        for a, b in zip(tail, full[start:]):
            np.testing.assert_array_equal(a, b)
    for threads in (1, 3):  # worker threads change who copies and gathers, never the batches
        same = list(s.batches(7, start_batch=3, threads=threads, **kw))
        assert len(same) == len(full) - 3 and all(np.array_equal(a, b) for a, b in zip(same, full[3:]))
    scaled = list(s.batches(7, dtype=np.float64, scale=0.5, **kw))
    assert scaled[0].dtype == np.float64 and all(np.array_equal(a, b * 0.5) for a, b in zip(scaled, full))
    stream = s.stream(7, seed=5, buffer_rows=30, block_rows=6, normalize=True)
    np.testing.assert_allclose(stream.batch(4), full[4] * np.float32(s.norm_scale))
    np.testing.assert_allclose(stream.batch(2), full[2] * np.float32(s.norm_scale))  # restart


def test_outlier_rows_removed(tmp_path):
    items = _items(30)
    big = next(i for i, (a, _) in enumerate(items) if len(a) >= 3)
    items[big][0][2, 1:] = 1e6  # a huge-norm token (column 0 keeps its tag)
    s = _write(tmp_path / "s", items)
    tag = items[big][0][2, 0]
    rows = np.concatenate(list(s.batches(4, outlier_factor=50.0, drop_last=False)))
    assert tag not in rows[:, 0].tolist() and len(rows) == s.num_tokens - 1


def test_device_batches_normalise_and_order(tmp_path):
    import jax.numpy as jnp

    s = _write(tmp_path / "s", _items())
    host = list(s.batches(6, seed=1))
    dev = list(st.device_batches(iter(host), scale=s.norm_scale, size=2))
    assert len(dev) == len(host) and dev[0].dtype == jnp.float32
    for h, d in zip(host, dev):
        np.testing.assert_allclose(np.asarray(d), h * np.float32(s.norm_scale), rtol=1e-6)
    # cast and scaled by the reader's threads, only transferred here: the same batches
    pre = list(st.device_batches(s.batches(6, seed=1, dtype=np.float32, scale=s.norm_scale)))
    assert len(pre) == len(host) and all(np.allclose(np.asarray(p), np.asarray(d), rtol=1e-6) for p, d in zip(pre, dev))


def _damage(tmp_path, shard, edit):
    """Write the test store, then replace the bytes of one shard file by edit(bytes); the store folder."""
    _write(tmp_path / "s", _items())
    f = tmp_path / "s" / f"shard_{shard:05d}.npy"
    f.write_bytes(edit(f.read_bytes()))
    return tmp_path / "s"


def test_truncated_shard_names_file(tmp_path):
    path = _damage(tmp_path, 1, lambda data: data[: len(data) - 50])
    with pytest.raises(ValueError, match="shard_00001.npy"):
        st.ActivationStore(path)


def test_corrupt_header_names_file(tmp_path):
    path = _damage(tmp_path, 2, lambda data: b"garbag" + data[6:])
    with pytest.raises(ValueError, match="shard_00002.npy.*corrupt"):
        st.ActivationStore(path)


def test_corrupt_payload_caught_by_checksum(tmp_path):
    path = _damage(tmp_path, 0, lambda data: data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    st.ActivationStore(path)  # header fine: opens without verify
    with pytest.raises(ValueError, match="shard_00000.npy.*checksum"):
        st.ActivationStore(path, verify=True)


def test_manifest_disagreeing_with_shard_names_file(tmp_path):
    _write(tmp_path / "s", _items())
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["shards"][1]["rows"] += 1
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="shard_00001.npy.*manifest"):
        st.ActivationStore(tmp_path / "s")
    m["shards"][1]["rows"] -= 1
    m["d"] = 9
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="shard_00000.npy"):
        st.ActivationStore(tmp_path / "s")


def test_dimension_mismatch_with_sae_names_manifest(tmp_path):
    s = _write(tmp_path / "s", _items())
    s.check_dim(8)
    with pytest.raises(ValueError, match="manifest.json.*d=8.*d=16"):
        s.check_dim(16)


def test_crash_mid_harvest_then_resume(tmp_path):
    items = _items(40)
    calls = []

    def crashing(i):
        calls.append(i)
        if i == 27:
            raise RuntimeError("killed")
        return items[i]

    with pytest.raises(RuntimeError, match="killed"):
        st.harvest(tmp_path / "s", list(range(40)), crashing, d=8, shard_rows=20, with_ids=True, show_progress=False)
    part = st.ActivationStore(tmp_path / "s", verify=True)  # every listed shard is complete and valid
    assert not part.complete and len(part.shards) >= 1
    x = np.concatenate([a for a, _ in items])
    np.testing.assert_array_equal(np.concatenate(list(part.shards)), x[: part.num_tokens])
    cursor = part.manifest["cursor"][0]
    calls.clear()
    s = st.harvest(tmp_path / "s", list(range(40)), crashing_free := (lambda i: (calls.append(i), items[i])[1]),
                   d=8, shard_rows=20, with_ids=True, show_progress=False)
    assert calls[0] == cursor and calls == list(range(cursor, 40))  # finished items not recomputed
    ref = _write(tmp_path / "ref", items)
    np.testing.assert_array_equal(np.concatenate(list(s.shards)), np.concatenate(list(ref.shards)))
    np.testing.assert_array_equal(s.ids(), ref.ids())
    assert s.manifest["sum_sq_norm"] == pytest.approx(ref.manifest["sum_sq_norm"], rel=1e-12)
    del crashing_free


def test_writer_refuses_different_settings(tmp_path):
    _write(tmp_path / "s", _items())
    with pytest.raises(ValueError, match="manifest.json.*differ"):
        st.ActivationWriter(tmp_path / "s", 8, shard_rows=21, with_ids=True, model="m", layer=3)
    with pytest.raises(ValueError, match="x: expected shape"):
        st.ActivationWriter(tmp_path / "t", 8).add(np.zeros((3, 5)), 0)
