"""Every public unmixing method registered with the shared contract suite."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jsparse import unmixing
from tests.contract import BadInput, ContractCase, ContractSuite, assert_clear_error
from tests.unmixing.helpers import R, bad_images, contract_inputs, fcls_inputs, init_inputs

KEY = jax.random.PRNGKey(0)
SELECT = lambda out: (out.endmembers, out.abundances, out.guidance, out.iterations)  # noqa: E731


def _bad(*rest):
    good, nan, inf, neg = bad_images()
    bands = good.shape[0]
    return [
        BadInput(args=lambda: (nan, *rest), match="Y"),
        BadInput(args=lambda: (inf, *rest), match="Y"),
        BadInput(args=lambda: (neg, *rest), match="clip_negative"),
        BadInput(args=lambda: (good, *rest), kwargs={"num_endmembers": 1}, match="num_endmembers"),
        BadInput(args=lambda: (good, *rest), kwargs={"num_endmembers": bands}, match="num_endmembers"),
    ]


def _mu_case(name, fn, **kw):
    """Multiplicative-update methods from an explicit start (keeps compile time small)."""

    def call(Y, M0, A0, num_endmembers=R):
        return fn(Y, num_endmembers, init_endmembers=M0, init_abundances=A0, max_iters=8, **kw)

    _, M0, A0 = init_inputs(KEY, jnp.float32)
    return ContractCase(name=name, fn=call, make_inputs=init_inputs, bad_inputs=_bad(M0, A0), select=SELECT,
                        rtol=5e-4, atol=5e-5)


def _rrlbs_random(Y, key, num_endmembers=R):
    return unmixing.rrlbs(Y, num_endmembers, key=key, init="random", max_iters=8)


class TestRRLbSContract(ContractSuite):
    # The key-driven path (random-pixel start); the VCA start is covered by TestVCAContract and
    # test_rrlbs.py::test_rrlbs_vca_init_jit_vmap.
    case = ContractCase(name="rrlbs", fn=_rrlbs_random, make_inputs=contract_inputs, bad_inputs=_bad(KEY),
                        select=SELECT, rtol=5e-4, atol=5e-5)


class TestNMFContract(ContractSuite):
    case = _mu_case("nmf", unmixing.nmf)


class TestL12Contract(ContractSuite):
    case = _mu_case("l12_nmf", unmixing.l12_nmf)


class TestL21Contract(ContractSuite):
    case = _mu_case("l21_nmf", unmixing.l21_nmf)


def _vca(Y, key, num_endmembers=R):
    return unmixing.vca(Y, num_endmembers, key=key, fcls_iters=20)


class TestVCAContract(ContractSuite):
    case = ContractCase(name="vca", fn=_vca, make_inputs=contract_inputs, bad_inputs=_bad(KEY), select=SELECT)


def _fcls_bad():
    good, nan, inf, neg = bad_images()
    M = jnp.ones((good.shape[0], R), good.dtype)
    return [
        BadInput(args=lambda: (nan, M), match="Y"),
        BadInput(args=lambda: (neg, M), match="clip_negative"),
        BadInput(args=lambda: (good, M[:-1]), match="endmembers"),
        BadInput(args=lambda: (good, M.at[0, 0].set(jnp.nan)), match="endmembers"),
    ]


class TestFCLSContract(ContractSuite):
    case = ContractCase(name="fcls", fn=functools.partial(unmixing.fcls, max_iters=30), make_inputs=fcls_inputs,
                        bad_inputs=_fcls_bad(), select=SELECT)


def test_preconditions_seeds_and_sizes():
    """gamma = 0 (the learned map divides by it), fewer pixels than endmembers, zero-size and
    non-array inputs, and bad keys raise ValueErrors naming the argument; int seeds are keys."""
    good = bad_images()[0]
    assert_clear_error(unmixing.rrlbs, good, R, key=KEY, gamma=0.0, match="gamma")
    assert_clear_error(unmixing.vca, good[:, :4], 10, key=KEY, match="num_endmembers")
    assert_clear_error(unmixing.rrlbs, good[:, :2], R, key=KEY, match="num_endmembers")
    assert_clear_error(unmixing.initial_point, good[:, :2], R, KEY, match="num_endmembers")
    assert_clear_error(unmixing.vca, "image", R, key=KEY, match="Y")
    assert_clear_error(unmixing.vca, jnp.zeros((good.shape[0], 0)), R, key=KEY, match="Y")
    assert_clear_error(unmixing.fcls, good, jnp.zeros((good.shape[0], 0)), match="endmembers")
    assert_clear_error(unmixing.fcls, good, "spectra", match="endmembers")
    assert_clear_error(unmixing.rrlbs, good, R, key="seed", match="key")
    assert_clear_error(unmixing.vca, good, R, key=1.5, match="key")
    seeded = _rrlbs_random(good, 3)
    keyed = _rrlbs_random(good, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(seeded.abundances), np.asarray(keyed.abundances))
    same = lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
    same(_vca(good, 4).endmembers, _vca(good, jax.random.PRNGKey(4)).endmembers)
    nmf = functools.partial(unmixing.nmf, good, R, init="random", max_iters=8)
    same(nmf(key=5).abundances, nmf(key=jax.random.PRNGKey(5)).abundances)
    M = unmixing.synthetic.smooth_endmembers(6, good.shape[0], R)
    same(M, unmixing.synthetic.smooth_endmembers(jax.random.PRNGKey(6), good.shape[0], R))
    scene = functools.partial(unmixing.synthetic.make_scene, endmembers=M, shape=(3, 3))
    same(scene(7).Y, scene(jax.random.PRNGKey(7)).Y)
