"""Small synthetic problems shared by the unmixing tests."""
import jax
import jax.numpy as jnp

from jsparse.unmixing import synthetic

BANDS, SHAPE, R = 16, (6, 6), 3


def small_scene(key, dtype, *, snr_db=40.0, outlier_fraction=0.0, bands=BANDS, shape=SHAPE, r=R, pure=0.2):
    """A tiny scene in `dtype` (endmembers from `smooth_endmembers`)."""
    k1, k2 = jax.random.split(key)
    M = synthetic.smooth_endmembers(k1, bands, r, dtype)
    return synthetic.make_scene(k2, M, shape, snr_db=snr_db, pure_fraction=pure,
                                outlier_fraction=outlier_fraction)


def contract_inputs(key, dtype):
    """(Y, key) for the contract suite."""
    sc = small_scene(key, dtype)
    return sc.Y, jax.random.fold_in(key, 7)


def fcls_inputs(key, dtype):
    sc = small_scene(key, dtype)
    return sc.Y, sc.endmembers


def bad_images():
    """Images that every method must reject, with the argument name the error must carry."""
    good = small_scene(jax.random.PRNGKey(0), jnp.float32).Y
    nan = good.at[0, 0].set(jnp.nan)
    inf = good.at[1, 2].set(jnp.inf)
    neg = good.at[2, 3].set(-0.1)
    return good, nan, inf, neg


def init_inputs(key, dtype):
    """(Y, M0, A0): a scene plus a perturbed starting point (skips the VCA/FCLS initialisation)."""
    sc = small_scene(key, dtype)
    k = jax.random.fold_in(key, 3)
    M0 = sc.endmembers * jax.random.uniform(k, sc.endmembers.shape, dtype, 0.8, 1.2)
    A0 = jnp.full(sc.abundances.shape, 1.0 / sc.abundances.shape[0], dtype)
    return sc.Y, M0, A0
