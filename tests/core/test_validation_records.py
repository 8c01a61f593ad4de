"""Validation messages name the argument; records and checkpoints round-trip atomically."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core import records, validation


def test_check_array_messages():
    with pytest.raises(ValueError, match=r"y: expected 1 dimensions, got shape \(2, 2\)"):
        validation.check_array(np.ones((2, 2)), "y", ndim=1)
    with pytest.raises(ValueError, match=r"H: expected shape \(3, \*\), got \(2, 4\)"):
        validation.check_array(np.ones((2, 4)), "H", shape=(3, None))
    with pytest.raises(ValueError, match="y: contains NaN or Inf"):
        validation.check_array(np.asarray([1.0, np.nan]), "y")
    with pytest.raises(ValueError, match="Y: contains negative values; pass clip=True"):
        validation.check_array(np.asarray([-1.0]), "Y", nonnegative=True, nonnegative_hint="pass clip=True")
    with pytest.raises(ValueError, match="expected a inexact dtype"):
        validation.check_array(np.arange(3), "x", dtype="inexact")
    # value checks are skipped on tracers (nothing may raise inside jit)
    jax.jit(lambda v: validation.check_array(v, "v"))(jnp.asarray([jnp.nan]))


def test_scalar_checks():
    with pytest.raises(ValueError, match="noise_var"):
        validation.check_positive(0.0, "noise_var")
    validation.check_positive(0.0, "lam", allow_zero=True)
    with pytest.raises(ValueError, match=r"beta: expected a value in \[0, 1\)"):
        validation.check_in_range(1.0, "beta", 0, 1, high_inclusive=False)
    with pytest.raises(ValueError, match="method"):
        validation.check_choice("x", "method", ("svd", "am"))
    with pytest.raises(ValueError, match="width"):
        validation.check_int(0, "width", minimum=1)
    with pytest.raises(ValueError, match="masks"):
        validation.check_same_tree({"a": 1}, {"b": 1}, "masks", "params")
    with pytest.raises(ValueError, match=r"factors\[1\]"):
        validation.check_factors([np.ones((2, 2)), np.ones(3)])
    with pytest.raises(ValueError, match="at least 2"):
        validation.check_factors([np.ones((2, 2))])


def test_json_and_pytree_round_trip(tmp_path):
    obj = {"a": np.float32(1.5), "b": jnp.arange(3), "c": float("nan"), "d": (1, 2)}
    records.write_json(tmp_path / "r.json", obj)
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2]}
    tree = {"w": jnp.ones((2, 3)), "s": (jnp.asarray(3, jnp.int32), jnp.zeros(2, bool))}
    records.save_pytree(tmp_path / "ck.npz", tree)
    back = records.load_pytree(tmp_path / "ck.npz", tree)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    for x, y in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(tree)):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="ck.npz"):
        records.load_pytree(tmp_path / "ck.npz", {"w": jnp.ones((3, 3)), "s": (jnp.asarray(3), jnp.zeros(2, bool))})
    assert not list(tmp_path.glob("*.tmp"))
    env = records.environment()
    assert env["jax"] == jax.__version__ and env["backend"] == jax.default_backend()


def test_fingerprint_is_sha256_of_arrays_then_sorted_json():
    import hashlib

    from jsparse.core.records import fingerprint

    s = {"b": 2, "a": [1, 0.5]}
    want = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()
    assert fingerprint(s, length=64) == want and fingerprint(s, length=8) == want[:8]
    x = np.arange(6.0).reshape(2, 3)
    h = hashlib.sha256(x.tobytes())
    h.update(json.dumps(s, sort_keys=True).encode())
    assert fingerprint(s, (x,)) == h.hexdigest()[:16]
    assert fingerprint(s, (x.T,)) != fingerprint(s, (x,))  # other data, other key
    assert fingerprint({"a": [1, 0.5], "b": 3}) != fingerprint(s)


def _damaged_copies(tmp_path, good):
    """(label, path) of damaged versions of the file `good`: truncated, emptied, garbage."""
    data = good.read_bytes()
    out = []
    for label, payload in [("truncated", data[: len(data) // 2]), ("empty", b""), ("garbage", b"\x00not a file" * 9)]:
        path = tmp_path / f"{label}{good.suffix}"
        path.write_bytes(payload)
        out.append((label, path))
    return out


def test_every_record_reader_raises_corrupt_file_error_naming_the_path(tmp_path):
    from jsparse import CorruptFileError

    records.write_json(tmp_path / "m.json", {"a": 1})
    records.save_arrays(tmp_path / "a.npz", {"x": np.arange(3.0)})
    readers = {
        ".json": records.read_json,
        ".npz": records.load_arrays,
    }
    for good in (tmp_path / "m.json", tmp_path / "a.npz"):
        for label, path in _damaged_copies(tmp_path, good):
            with pytest.raises(CorruptFileError, match=str(path)) as err:
                readers[good.suffix](path)
            assert isinstance(err.value, ValueError), label
    with pytest.raises(FileNotFoundError):
        records.load_arrays(tmp_path / "missing.npz")


def test_load_arrays_refuses_same_shape_values_written_over_a_checksummed_file(tmp_path):
    from jsparse import CorruptFileError

    path = tmp_path / "chunk.npz"
    records.save_arrays(path, {"x": np.arange(4.0), "y": np.ones((2, 2), np.float32)})
    got = records.load_arrays(path)
    assert set(got) == {"x", "y"} and got["y"].dtype == np.float32
    with np.load(path) as data:  # same names, shapes and checksum entry, other values
        tampered = {k: data[k] for k in data.files}
    tampered["x"] = np.full(4, np.nan)
    np.savez(path, **tampered)
    with pytest.raises(CorruptFileError, match="checksum"):
        records.load_arrays(path)


def test_load_pytree_dtype_mismatch_is_a_corrupt_file_error(tmp_path):
    from jsparse import CorruptFileError

    path = tmp_path / "state.npz"
    records.save_pytree(path, {"a": np.zeros(2, np.float32)})
    with pytest.raises(CorruptFileError, match="dtype float32, expected"):
        records.load_pytree(path, {"a": np.zeros(2, np.float64)})


def test_load_pytree_keeps_numpy_float64_leaves_whatever_the_64_bit_mode(tmp_path):
    path = tmp_path / "state.npz"
    tree = {"hist": np.arange(3.0), "w": jnp.ones(2, jnp.float32)}
    records.save_pytree(path, tree)
    for _ in range(3):  # save what was loaded, load again: the dtypes stay
        back = records.load_pytree(path, tree)
        assert back["hist"].dtype == np.float64 and isinstance(back["hist"], np.ndarray)
        assert back["w"].dtype == jnp.float32
        records.save_pytree(path, back)


def test_scalar_checks_name_the_argument_for_non_numbers():
    for bad in ("0.1", [0.1], 1 + 2j, True, None):
        with pytest.raises(ValueError, match="lam"):
            validation.check_positive(bad, "lam")
        with pytest.raises(ValueError, match="beta"):
            validation.check_in_range(bad, "beta", 0.0, 1.0)
    validation.check_real(a=1, b=np.float32(2.0), c=jnp.asarray(3.0), d=None)
