"""validation.as_key (int seeds or keys) and validation.check_bool_mask."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core.validation import as_key, check_bool_mask
from tests.contract import assert_clear_error


def test_as_key_accepts_seeds_and_keys():
    np.testing.assert_array_equal(as_key(5), jax.random.PRNGKey(5))
    np.testing.assert_array_equal(as_key(np.int64(7)), jax.random.PRNGKey(7))
    np.testing.assert_array_equal(as_key(2**40), np.array([256, 0], np.uint32))  # same in float32 and float64 mode
    raw = jax.random.PRNGKey(3)
    assert as_key(raw) is raw or np.array_equal(as_key(raw), raw)
    typed = jax.random.key(1)
    assert as_key(typed) is typed


@pytest.mark.parametrize("bad", [-1, 2**63, True, 1.5, "seed", None, np.zeros(3), np.zeros((2, 2), np.uint32),
                                 jax.random.split(jax.random.key(0), 2)])
def test_as_key_rejects(bad):
    assert_clear_error(as_key, bad, "seed_or_key", match="seed_or_key")


def test_check_bool_mask():
    np.testing.assert_array_equal(check_bool_mask([True, False], "m"), jnp.array([True, False]))
    assert_clear_error(check_bool_mask, jnp.ones(2), "m", match="m: expected a boolean mask")
    assert_clear_error(check_bool_mask, np.array([0.5]), "m", match="dtype float64")
    assert_clear_error(check_bool_mask, np.ones(2, np.int32), "m", match="boolean")
    assert_clear_error(check_bool_mask, "x", "m", match="boolean array")
    assert_clear_error(check_bool_mask, np.ones(2, bool), "m", shape=(3,), match="shape")
