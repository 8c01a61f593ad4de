"""Activation store: round-trip, exact-once shuffling, bounded buffer, normalisation, errors
naming the file, crash mid-harvest then resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jsparse import CorruptFileError
from jsparse.sae import store as st
from tests.contract import assert_clear_error


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
    s = st.ActivationStore(path)  # header fine: opens, the checksum is checked at the first read
    with pytest.raises(ValueError, match="shard_00000.npy.*checksum"):
        st.ActivationStore(path, verify=True)
    assert_clear_error(lambda: next(s.batches(4)), match="shard_00000.npy.*SHA-256")


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


def _edit_manifest(folder, edit):
    """Rewrite folder/manifest.json as edit(parsed manifest) (a dict, list, str or bytes)."""
    mpath = folder / "manifest.json"
    new = edit(json.loads(mpath.read_text()))
    mpath.write_bytes(new if isinstance(new, bytes) else new.encode() if isinstance(new, str) else
                      json.dumps(new).encode())


def _without(m, *keys):
    obj = m
    for k in keys[:-1]:
        obj = obj[k]
    del obj[keys[-1]]
    return m


def _with(m, value, *keys):
    obj = m
    for k in keys[:-1]:
        obj = obj[k]
    obj[keys[-1]] = value
    return m


MANIFEST_DAMAGE = [  # (edit, what the CorruptFileError says)
    (lambda m: _without(m, "d"), "missing field 'd'"),
    (lambda m: _without(m, "shards", 1, "rows"), r"missing field 'shards\[1\].rows'"),
    (lambda m: _without(m, "shards", 0, "ids_crc32"), r"missing field 'shards\[0\].ids_crc32'"),
    (lambda m: json.dumps(m)[:60], "unreadable activation store manifest.*JSONDecodeError"),
    (lambda m: b"\xff\xfe garbage \x00", "unreadable activation store manifest"),
    (lambda m: [m], "expected a JSON object"),
    (lambda m: _with(m, "8", "d"), "field 'd' is '8', expected an integer"),
    (lambda m: _with(m, True, "num_tokens"), "field 'num_tokens'"),
    (lambda m: _with(m, "float64", "dtype"), "field 'dtype'"),
    (lambda m: _with(m, {"0": m["shards"][0]}, "shards"), "field 'shards'"),
    (lambda m: _with(m, "../../x.npy", "shards", 2, "file"), "not a file name inside the store"),
    (lambda m: _with(m, "abc", "shards", 2, "sha256"), "expected a hex SHA-256"),
    (lambda m: _with(m, [1], "cursor"), "field 'cursor'"),
    (lambda m: _with(m, "other/1", "format"), "not an activation store manifest"),
    (lambda m: _with(m, m["num_tokens"] + 1, "num_tokens"), "num_tokens .* rows in the shards"),
]


def test_damaged_manifest_is_a_corrupt_file_error_naming_it(tmp_path):
    """Reader, resumed writer and harvest: CorruptFileError naming manifest.json and the fault
    (not KeyError or JSONDecodeError); a folder with no manifest is a plain ValueError."""
    good = _write(tmp_path / "good", _items()).manifest
    resume = dict(d=8, shard_rows=20, with_ids=True, model="m", layer=3)
    for i, (edit, match) in enumerate(MANIFEST_DAMAGE):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        for f in (tmp_path / "good").iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        _edit_manifest(folder, lambda m: edit(json.loads(json.dumps(good))))
        for open_it in (st.ActivationStore, lambda p: st.ActivationWriter(p, **resume),
                        lambda p: st.harvest(p, [], lambda i: None, show_progress=False, **resume)):
            err = assert_clear_error(open_it, folder, match=f"manifest.json: .*{match}")
            assert isinstance(err, CorruptFileError) and Path(err.path) == folder / "manifest.json", match
    err = assert_clear_error(st.ActivationStore, tmp_path / "nothing", match="no manifest.json")
    assert not isinstance(err, CorruptFileError)


def test_damaged_shard_and_ids_files_are_corrupt_file_errors(tmp_path):
    """A listed file that is missing, has extra bytes, or a wrong dtype: CorruptFileError naming it."""
    folder = _write(tmp_path / "s", _items()).path
    shard, ids = folder / "shard_00001.npy", folder / "ids_00002.npy"
    data = shard.read_bytes()
    shard.write_bytes(data + b"\0" * 8)
    assert_clear_error(st.ActivationStore, folder, match=r"shard_00001.npy: corrupt shard: \d+ bytes")
    shard.unlink()
    assert_clear_error(st.ActivationStore, folder, match="shard_00001.npy: shard listed in .*manifest.json is missing")
    shard.write_bytes(data)
    np.save(ids, np.load(ids).astype(np.int64))
    s = st.ActivationStore(folder)
    assert_clear_error(s.ids, match="ids_00002.npy: holds .*int64")
    ids.unlink()
    assert_clear_error(s.ids, match="ids_00002.npy: ids file listed in .*missing")
    folder = _write(tmp_path / "t", _items()).path
    _overwrite_rows(folder / "ids_00001.npy", 5)
    st.ActivationStore(folder)  # lazily: ids files are hashed when ids() reads them
    assert_clear_error(st.ActivationStore, folder, verify="full", match="ids_00001.npy: fails the SHA-256")


def _overwrite_rows(f, value=7.0):
    """Overwrite the last row of the float32 shard (or int32 ids) file f with finite values: same size."""
    data = f.read_bytes()
    arr = np.load(f)
    tail = np.full(arr.shape[1], value, arr.dtype).tobytes()
    f.write_bytes(data[: len(data) - len(tail)] + tail)


def _crash_at(path, items, at):
    """A harvest of `items` killed while computing item `at`: an unfinished store."""
    def fn(i):
        if i == at:
            raise RuntimeError("killed")
        return items[i]

    with pytest.raises(RuntimeError, match="killed"):
        st.harvest(path, list(range(len(items))), fn, d=8, shard_rows=20, with_ids=True, show_progress=False)
    return path


def test_finite_garbage_in_a_shard_is_refused_before_its_rows_are_used(tmp_path):
    """A shard overwritten with finite values of the same size: a resumed harvest refuses it, the
    default open refuses it before returning any of its rows, verify="full" at open, verify="size"
    (opt-out) reads it. Ids files too, and old stores (crc32 only) by their crc32."""
    items = _items(40)
    folder = _crash_at(tmp_path / "s", items, 27)
    before = (folder / "manifest.json").read_bytes()
    _overwrite_rows(folder / "shard_00001.npy")
    calls = []
    err = assert_clear_error(st.harvest, folder, list(range(40)), lambda i: (calls.append(i), items[i])[1], d=8,
                             shard_rows=20, with_ids=True, show_progress=False,
                             match="shard_00001.npy: fails the SHA-256")
    assert isinstance(err, CorruptFileError) and calls == [] and (folder / "manifest.json").read_bytes() == before
    assert_clear_error(st.ActivationStore, folder, verify=True, match="shard_00001.npy: fails the SHA-256")
    # lazily: the rows of the good shard 0 come out, then the error, before any row of shard 1
    s = st.ActivationStore(folder)
    got = []
    with pytest.raises(CorruptFileError, match="shard_00001.npy"):
        for b in s.batches(5, shuffle=False, buffer_rows=20, block_rows=20):
            got.append(b)
    x = np.concatenate([a for a, _ in items])
    assert len(got) == 4 and np.array_equal(np.concatenate(got), x[:20])
    assert_clear_error(s.rows, np.array([25]), match="shard_00001.npy")
    assert_clear_error(lambda: s.shards, match="shard_00001.npy")
    np.testing.assert_array_equal(s.rows(np.array([3])), x[[3]])
    assert st.ActivationStore(folder, verify="size").rows(np.array([39]))[0, 1] == 7.0  # opted out: read as is
    assert_clear_error(st.ActivationStore, folder, verify="yes", match="verify")
    _overwrite_rows(folder / "ids_00000.npy", 5)
    assert_clear_error(st.ActivationStore(folder).ids, match="ids_00000.npy: fails the SHA-256")
    _edit_manifest(folder, lambda m: [[e.pop("sha256"), e.pop("ids_sha256")] for e in m["shards"]] and m)
    assert_clear_error(st.ActivationStore(folder).ids, match="ids_00000.npy: fails the crc32")
    assert_clear_error(lambda: next(st.ActivationStore(folder).batches(5)), match="shard_00001.npy: fails the crc32")


EXIT_SCRIPT = """
import sys
import numpy as np
from jsparse.sae import store as st
from jsparse.sae.prefetch import Background
w = st.ActivationWriter(sys.argv[1], 4, shard_rows=10, resume=False)
w.add(np.arange(200, dtype=np.float32).reshape(50, 4), 0)
w.close()
s = st.ActivationStore(sys.argv[1])
kept = [s.batches(3, buffer_rows=8, block_rows=4, threads=3), s.batches(3, threads=1), st.device_batches(s.batches(4))]
stream = s.stream(3, buffer_rows=8, block_rows=4)
print([next(it).shape for it in kept], stream.batch(0).shape, stream.batch(5).shape, next(Background(iter("ab"))))
"""


def test_open_readers_close_cleanly_at_exit(tmp_path):
    """Generators from `batches` and `device_batches`, a `StoreStream` and a `Background` left open
    when the interpreter exits: no "Exception ignored" (or anything else) on stderr."""
    env = dict(os.environ, JSPARSE_PROGRESS="0", JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(tmp_path / "s")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[(3, 4), (3, 4), (4, 4)] (3, 4) (3, 4) a", proc.stdout
    assert proc.stderr == ""


def test_batches_checks_arguments_at_call_and_stops_its_threads(tmp_path):
    import threading

    from jsparse.sae import prefetch

    s = _write(tmp_path / "s", _items())
    assert_clear_error(s.batches, 0, match="batch_size")  # at the call, not at the first next()
    before = set(threading.enumerate())
    it = s.batches(3, threads=3)
    next(it)
    started = set(threading.enumerate()) - before
    assert any(t.name.startswith("jsparse-store") for t in started)
    prefetch._close_open()  # what runs at interpreter exit
    assert not any(t.is_alive() for t in started) and list(it) == []
