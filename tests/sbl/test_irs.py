"""IRS-MIMO simulator and metrics: Kronecker model == physical model, redraw rule, NMSE, SER."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jsparse.core.kron import kron_matvec
from jsparse.sbl import irs

# One compiled program per (setup, dtype, shapes) instead of op-by-op dispatch (the slow part).
sim = jax.jit(irs.simulate, static_argnames=("setup", "dtype"))

SMALL = irs.IRSSetup(ms_antennas=4, bs_antennas=8, irs_elements=32, grid=10, spread=3, pilots=2, configs=3)


@pytest.mark.parametrize("dtype", [jnp.complex64, jnp.complex128])
def test_kronecker_model_equals_physical_model(dtype):
    with jax.enable_x64(dtype == jnp.complex128):
        p = sim(jax.random.PRNGKey(0), 1e6, dtype=dtype)  # essentially noiseless
        tol = 1e-4 if dtype == jnp.complex64 else 1e-10
        assert p.y.dtype == dtype and p.x.dtype == dtype and p.noise_var.dtype == jnp.finfo(dtype).dtype
        assert [f.shape for f in p.factors] == [(6, 18), (3, 18), (16, 18)] and p.y.shape == (288,)
        clean = jnp.einsum("kbm,mp->kpb", p.channels, p.pilots).reshape(-1)
        np.testing.assert_allclose(np.asarray(kron_matvec(p.factors, p.x)), np.asarray(clean), rtol=0,
                                   atol=tol * float(jnp.max(jnp.abs(clean))))
        est = irs.channels_from_x(p.x, p.factors[0], p.ms_dict, p.factors[2])
        np.testing.assert_allclose(np.asarray(est), np.asarray(p.channels),
                                   atol=tol * float(jnp.max(jnp.abs(p.channels))))
        # 3 (cascaded, contiguous mod G) x 1 (MS) x 3 (BS, contiguous) nonzeros.
        support = np.argwhere(np.abs(np.asarray(p.x).reshape(18, 18, 18)) > 0)
        assert len(support) == 9
        casc, ms, bs = (sorted(set(support[:, i])) for i in range(3))
        assert len(ms) == 1 and bs == list(range(bs[0], bs[0] + 3))
        assert len(casc) == 3 and sorted((c - casc[0]) % 18 for c in casc) in ([0, 1, 2], [0, 1, 17], [0, 16, 17])
        assert bool(p.valid)


def test_physical_channel_against_numpy_formula():
    s = SMALL
    p = sim(jax.random.PRNGKey(1), 10.0, setup=s)
    a = lambda n: np.exp(1j * np.pi * np.outer(np.arange(n), 2 * np.arange(s.grid) / s.grid - 1)) / np.sqrt(n)  # noqa: E731
    # Effective channel of configuration k = (A_B x-slices) through the cascaded dictionary, dense.
    d_i = a(s.irs_elements)[:, :1] * np.conj(a(s.irs_elements))
    x = np.asarray(p.x, np.complex128).reshape(s.grid, s.grid, s.grid)
    thetas = np.asarray(p.thetas, np.float64)
    for k in range(s.configs):
        phi = thetas[k] @ d_i
        g = np.einsum("j,mn,bl,jnl->bm", phi, np.conj(a(s.ms_antennas)), a(s.bs_antennas), x)
        np.testing.assert_allclose(g, np.asarray(p.channels[k]), atol=1e-4 * np.abs(g).max())
    assert set(np.unique(np.abs(thetas) * np.sqrt(s.irs_elements)).round(6)) == {1.0}


def test_deterministic_per_key_and_snr_sets_noise():
    a = sim(jax.random.PRNGKey(2), 8.0, setup=SMALL)
    b = sim(jax.random.PRNGKey(2), 8.0, setup=SMALL)
    c = sim(jax.random.PRNGKey(3), 8.0, setup=SMALL)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert not np.allclose(np.asarray(a.y), np.asarray(c.y))
    clean = kron_matvec(a.factors, a.x)
    np.testing.assert_allclose(float(a.noise_var), float(jnp.mean(jnp.abs(clean) ** 2)) / 10**0.8, rtol=1e-3)
    # Monte Carlo check of the noise power over many keys at the same channel (fold the noise key only).
    keys = jax.random.split(jax.random.PRNGKey(4), 24)
    sims = jax.vmap(lambda k: sim(k, 8.0, setup=SMALL))(keys)
    ratio = jnp.mean(jnp.abs(sims.y - jax.vmap(kron_matvec)(sims.factors, sims.x)) ** 2, axis=1) / sims.noise_var
    valid = np.asarray(sims.valid)  # (a draw whose pilots see no channel has its SNR set on rounding noise)
    assert valid.sum() >= 20 and abs(float(jnp.mean(ratio[valid])) - 1) < 0.1


def test_pilots_that_see_no_channel_make_the_draw_invalid():
    """Pilots orthogonal to every MS steering vector (zero pilots, the extreme case): no signal, not valid;
    the same draw with its own pilots is valid."""
    key = jax.random.PRNGKey(2)
    own = sim(key, 8.0, setup=SMALL)
    blind = irs.Training(jnp.zeros_like(own.pilots), irs.draw_training(key, SMALL).candidates)
    assert bool(own.valid) and not bool(sim(key, 8.0, setup=SMALL, training=blind).valid)


def test_degenerate_configurations_are_redrawn():
    # G = 1, L = 1: the channel is ∝ Σ_i θ_i, zero whenever the two signs differ (half the draws).
    s = irs.IRSSetup(ms_antennas=2, bs_antennas=2, irs_elements=2, grid=1, spread=1, pilots=1, configs=8, redraws=16)
    sims = jax.vmap(lambda k: sim(k, 10.0, setup=s))(jax.random.split(jax.random.PRNGKey(5), 50))
    th = np.asarray(sims.thetas)  # (50, 8, 2)
    assert np.all(th[..., 0] == th[..., 1])
    norms = np.linalg.norm(np.asarray(sims.channels), axis=(-2, -1))
    assert norms.min() > 1e-3
    # With one pilot on two MS antennas, some pilots are orthogonal to the (single) steering vector:
    # those draws see no channel and only those are invalid.
    seen = np.mean(np.abs(np.asarray(sims.y)) ** 2, axis=1) > 1e-6 * np.mean(norms**2, axis=1)
    np.testing.assert_array_equal(np.asarray(sims.valid), seen)
    assert 0 < seen.sum() < len(seen)
    # An impossible threshold: nothing passes, the flag says so.
    bad = sim(jax.random.PRNGKey(6), 10.0, setup=s._replace(degenerate_tol=1e9))
    assert not bool(bad.valid)


def test_shared_training_and_per_realisation_default():
    """A Training drawn once is used verbatim by every realisation (the reference draws pilots and
    configurations once per run); without one, simulate draws it from the realisation key."""
    tr = irs.draw_training(jax.random.PRNGKey(9), SMALL)
    a = sim(jax.random.PRNGKey(10), 8.0, setup=SMALL, training=tr)
    b = sim(jax.random.PRNGKey(11), 8.0, setup=SMALL, training=tr)
    for p in (a, b):
        np.testing.assert_array_equal(np.asarray(p.pilots), np.asarray(tr.pilots))
        np.testing.assert_array_equal(np.asarray(p.thetas), np.asarray(tr.candidates[0]))  # nothing degenerate
        np.testing.assert_array_equal(np.asarray(p.factors[1]), np.asarray(a.factors[1]))
    assert not np.allclose(np.asarray(a.x), np.asarray(b.x))  # the channels still differ
    key = jax.random.PRNGKey(12)
    own = irs.draw_training(jax.random.split(key, 10)[6], SMALL)
    for u, v in zip(jax.tree_util.tree_leaves(sim(key, 8.0, setup=SMALL)),
                    jax.tree_util.tree_leaves(sim(key, 8.0, setup=SMALL, training=own))):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(ValueError, match="training"):
        sim(key, 8.0, training=tr)  # SMALL-sized training for the reference setup



def test_matlab_training_reproduces_the_reference_draw(x64):
    """matlab_training = main.m's first rand calls in a fresh MATLAB session. MATLAB documents
    rand(1, 10) after `rng default` as 0.8147 0.9058 0.1270 0.9134 0.6324 0.0975 0.2785 0.5469
    0.9575 0.9649; pilot_gen maps quarters of [0, 1] to QPSK symbols, column-major."""
    matlab_rand = np.array([0.8147, 0.9058, 0.1270, 0.9134, 0.6324, 0.0975, 0.2785, 0.5469, 0.9575, 0.9649])
    np.testing.assert_allclose(np.random.RandomState(5489).random_sample(10), matlab_rand, atol=5e-5)
    tr = irs.matlab_training(dtype=jnp.complex128)
    qpsk = {0: 1 + 1j, 1: 1 - 1j, 2: -1 + 1j, 3: -1 - 1j}
    first = np.array([qpsk[int(u // 0.25)] for u in matlab_rand[:6]]) / np.sqrt(2 * 6)
    np.testing.assert_allclose(np.asarray(tr.pilots)[:, 0], first, atol=1e-15)  # X(:, 1) = s(1:6)
    assert tr.pilots.shape == (6, 3) and tr.candidates.shape == (16, 6, 256)
    np.testing.assert_allclose(np.abs(np.asarray(tr.candidates)), 1 / 16)
    p = sim(jax.random.PRNGKey(1), 16.0, dtype=jnp.complex128, training=tr)
    np.testing.assert_array_equal(np.asarray(p.thetas), np.asarray(tr.candidates[0]))

# Pilots (times √12) of a per-realisation draw that made realisation 7 of the first 50 fail for every
# method: Φ_MS columns 0, 6 and 12 (spatial frequencies −1, −1/3, 1/3) are exactly collinear, so the
# MS angle 12 cannot be told from 0 and 6 with these 3 pilots.
_COLLINEAR_PILOTS = np.array([
    [-1 - 1j, -1 + 1j, -1 + 1j], [1 + 1j, -1 + 1j, 1 + 1j], [1 + 1j, 1 - 1j, -1 - 1j],
    [-1 - 1j, -1 + 1j, -1 + 1j], [1 + 1j, -1 + 1j, 1 + 1j], [1 + 1j, -1 + 1j, 1 - 1j],
]) / np.sqrt(12)


def test_ms_coherence_flags_unidentifiable_pilots(x64):
    a_m = np.asarray(irs.steering(6, 18, jnp.complex128))
    phi = _COLLINEAR_PILOTS.T @ np.conj(a_m)
    q = phi / np.linalg.norm(phi, axis=0)
    want = np.abs(q.conj().T @ q) - np.eye(18)
    np.testing.assert_allclose(float(irs.ms_coherence(jnp.asarray(phi))), want.max(), rtol=1e-12)
    np.testing.assert_allclose(want[12, [0, 6]], 1.0, rtol=1e-12)
    # The unidentifiability is real: y for MS angle 12 is reproduced exactly by MS angles 0 and 6.
    cols = phi[:, [0, 6]]
    coef = np.linalg.lstsq(cols[:, :1], phi[:, 12], rcond=None)[0]
    np.testing.assert_allclose(cols[:, :1] @ coef, phi[:, 12], atol=1e-12)
    # The reference-style single draw used by the experiment (seed 0) has no such pair.
    tr = irs.draw_training(jax.random.PRNGKey(0), dtype=jnp.complex128)
    assert float(irs.ms_coherence(tr.pilots.T @ jnp.conj(jnp.asarray(a_m)))) < 0.99


def test_channel_nmse():
    p = sim(jax.random.PRNGKey(7), 10.0, setup=SMALL)
    np.testing.assert_allclose(np.asarray(irs.channel_nmse(p.x, p)), 0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(irs.channel_nmse(jnp.zeros_like(p.x), p)), 1, rtol=1e-6)
    half = irs.channel_nmse(0.5 * p.x, p)
    np.testing.assert_allclose(np.asarray(half), 0.25, rtol=1e-4)
    assert half.shape == (SMALL.configs,)


def _simulate_ser_numpy(est, true, snr_db, n, rng):
    """The reference procedure, literally: SVD beamformers, QPSK symbols, noise, min distance."""
    u, s, vh = np.linalg.svd(est)
    comb, prec = u[:, 0], np.conj(vh[0])
    h = comb.conj() @ true @ prec
    h_hat = comb.conj() @ est @ prec
    symbols = np.array([1, 1j, -1, -1j])
    sent = rng.integers(0, 4, n)
    sigma2 = np.abs(h) ** 2 / 10 ** (snr_db / 10)
    y = h * symbols[sent] + np.sqrt(sigma2 / 2) * (rng.normal(size=n) + 1j * rng.normal(size=n))
    det = np.argmin(np.abs(y[:, None] - h_hat * symbols[None, :]), axis=1)
    return np.mean(det != sent)


def test_ser_closed_form_matches_symbol_simulation(x64):
    rng = np.random.default_rng(0)
    true = rng.normal(size=(2, 5, 3)) + 1j * rng.normal(size=(2, 5, 3))
    est = true + 0.4 * (rng.normal(size=true.shape) + 1j * rng.normal(size=true.shape))
    n = 200_000
    for snr in (4.0, 8.0):
        exact = np.asarray(irs.ser_qpsk(jnp.asarray(est), jnp.asarray(true), snr))
        for k in range(2):
            mc = _simulate_ser_numpy(est[k], true[k], snr, n, rng)
            sd = np.sqrt(exact[k] * (1 - exact[k]) / n)
            assert abs(mc - exact[k]) < 5 * sd + 1e-6, (snr, k, mc, exact[k])
        assert np.all(exact > 1e-3)  # a meaningful comparison, not two zeros


def test_ser_perfect_estimate_is_textbook_qpsk_and_zero_estimate_is_three_quarters(x64):
    p = sim(jax.random.PRNGKey(8), 10.0, setup=SMALL, dtype=jnp.complex128)
    q = norm.sf(np.sqrt(10 ** 0.4))  # Q(sqrt(Es/N0)) per rail for unit-energy QPSK at 4 dB
    np.testing.assert_allclose(np.asarray(irs.ser_qpsk(p.channels, p.channels, 4.0)), 1 - (1 - q) ** 2, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(irs.ser_qpsk(jnp.zeros_like(p.channels), p.channels, 4.0)), 0.75)
    mc = irs.ser_qpsk(p.channels, p.channels, 4.0, key=jax.random.PRNGKey(0), num_symbols=100_000)
    assert np.all(np.abs(np.asarray(mc) - (1 - (1 - q) ** 2)) < 0.005)
    counts = np.asarray(mc, np.float64) * 100_000
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # whole counts


def test_bad_inputs():
    with pytest.raises(ValueError, match="configs"):
        irs.simulate(jax.random.PRNGKey(0), 10.0, setup=irs.IRSSetup(configs=0))
    with pytest.raises(ValueError, match="spread"):
        irs.simulate(jax.random.PRNGKey(0), 10.0, setup=irs.IRSSetup(grid=4, spread=5))
    with pytest.raises(ValueError, match="dtype"):
        irs.simulate(jax.random.PRNGKey(0), 10.0, dtype=jnp.float32)
    p = irs.simulate(jax.random.PRNGKey(0), 10.0, setup=SMALL)
    with pytest.raises(ValueError, match="x_hat"):
        irs.channel_nmse(jnp.zeros(17, jnp.complex64), p)
    with pytest.raises(ValueError, match="est_channels"):
        irs.ser_qpsk(p.channels[:, :-1], p.channels, 10.0)


def test_tail_study_subset_probability_is_hypergeometric():
    """The tail study's P(statistic of a random subset) against the closed form: with b bad of R
    realisations, P(a subset of n has none) = C(R - b, n) / C(R, n)."""
    from math import comb

    from experiments.irs.tail_study import subset_probability

    rng = np.random.default_rng(0)
    none_bad = lambda s: np.all(s == 0, axis=1)  # noqa: E731
    v = np.zeros(10)
    v[3] = 1.0
    assert subset_probability(v, none_bad, 5, 20_000, rng) == pytest.approx(comb(9, 5) / comb(10, 5), abs=0.02)
    v[7] = 1.0
    assert subset_probability(v, none_bad, 3, 20_000, rng) == pytest.approx(comb(8, 3) / comb(10, 3), abs=0.02)
