"""The scenes of the unmixing reproduction: synthetic scenes at several SNRs and the real images
(Samson, Jasper Ridge, Urban when found), clean and with a fraction of corrupted bands, per seed."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.unmixing import datasets, synthetic


class Scene(NamedTuple):
    name: str
    Ys: np.ndarray  # (S, L, N)
    endmembers: np.ndarray  # (L, R)
    abundances: np.ndarray  # (R, N)
    shape: tuple
    bad: np.ndarray  # (S, L) corrupted bands
    names: tuple


def default_data_root() -> Path:
    env = os.environ.get(datasets.ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "hyperspectral"


def _subsample(d: datasets.HSIDataset, stride: int):
    if stride == 1:
        return d.Y, d.abundances, d.shape
    H, W = d.shape
    rows, cols = np.arange(0, H, stride), np.arange(0, W, stride)
    idx = (rows[:, None] + cols[None, :] * H).T.ravel()  # column-major order of the kept grid
    return d.Y[:, idx], d.abundances[:, idx], (len(rows), len(cols))


def build_scenes(cfg: dict, data_root: Path) -> tuple[list[Scene], list[str]]:
    notes, real = [], {}
    for name in ("samson", "jasper", "urban"):
        try:
            real[name] = datasets.load_dataset(name, root=data_root)
        except FileNotFoundError as err:
            notes.append(f"{name}: skipped ({err})")
    S = cfg["seeds"]
    scenes = []
    if "jasper" in real:
        M_syn, syn_names = real["jasper"].endmembers, real["jasper"].names
    else:
        M_syn = np.asarray(synthetic.smooth_endmembers(jax.random.PRNGKey(11), 120, 4, jnp.float64))
        syn_names = tuple(f"endmember {k + 1}" for k in range(4))
    for snr in cfg["snrs"]:
        scs = [synthetic.make_scene(jax.random.PRNGKey(1000 + s), jnp.asarray(M_syn), cfg["synth_shape"], snr_db=snr)
               for s in range(S)]
        # The synthetic scenes differ per seed; the ground truth of seed 0 is kept for plots, and
        # per-seed truths are evaluated in `run_cell` through `truths`.
        scenes.append(Scene(f"synthetic SNR {snr:g} dB", np.stack([np.asarray(c.Y) for c in scs]), M_syn,
                            np.stack([np.asarray(c.abundances) for c in scs]), cfg["synth_shape"],
                            np.zeros((S, M_syn.shape[0]), bool), syn_names))
    for name, d in real.items():
        Y, A, shape = _subsample(d, cfg["stride"])
        for frac in cfg["fractions"]:
            Ys, bads = [], []
            for s in range(S):
                if frac > 0:
                    Yc, bad = synthetic.corrupt_bands(jax.random.PRNGKey(2000 + s), jnp.asarray(Y), frac, shape=shape,
                                                      kind=cfg["outlier_kind"], strength=cfg["outlier_strength"])
                else:
                    Yc, bad = Y, np.zeros(Y.shape[0], bool)
                Ys.append(np.asarray(Yc))
                bads.append(np.asarray(bad))
            label = f"{name}" if frac == 0 else f"{name} +{frac:.0%} bad bands"
            scenes.append(Scene(label, np.stack(Ys), d.endmembers, np.stack([A] * S), shape, np.stack(bads), d.names))
    return scenes, notes
