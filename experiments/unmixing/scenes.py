"""The scenes of the unmixing reproduction: synthetic scenes at several SNRs and the real images
(Samson and Jasper Ridge, which ship with jsparse; Urban when its image is found), clean and with a
fraction of corrupted bands, per seed."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.unmixing import datasets, fetch, synthetic


class Scene(NamedTuple):
    name: str
    Ys: np.ndarray  # (S, L, N)
    endmembers: np.ndarray  # (L, R)
    abundances: np.ndarray  # (R, N)
    shape: tuple
    bad: np.ndarray  # (S, L) corrupted bands
    names: tuple


def default_data_root() -> Path | None:
    """None: each file is looked up in $JSPARSE_HSI_ROOT, the user folder and the bundled data
    (`jsparse.unmixing.fetch`); a folder given with `--data-root` is searched alone."""
    return None


def _subsample(d: datasets.HSIDataset, stride: int):
    if stride == 1:
        return d.Y, d.abundances, d.shape
    H, W = d.shape
    rows, cols = np.arange(0, H, stride), np.arange(0, W, stride)
    idx = (rows[:, None] + cols[None, :] * H).T.ravel()  # column-major order of the kept grid
    return d.Y[:, idx], d.abundances[:, idx], (len(rows), len(cols))


def load_real(data_root: Path | None, notes: list[str]) -> dict[str, datasets.HSIDataset]:
    """The real scenes found, with a note on where each was read or why it was skipped.

    Samson and Jasper Ridge ship with jsparse: without `data_root`, a missing one is a broken install
    and raises. Urban is skipped with a note when its files are missing (its image is never bundled).
    """
    real = {}
    for name, (sub, image_file, _, _) in datasets.DATASETS.items():
        try:
            real[name] = datasets.load_dataset(name, root=data_root)
        except FileNotFoundError as err:
            if data_root is None and name != "urban":
                raise FileNotFoundError(f"{name} ships with jsparse but was not found (reinstall jsparse): {err}") \
                    from err
            notes.append(f"{name}: skipped ({err})")
            continue
        notes.append(f"{name}: read from {fetch.find_file(sub, image_file, data_root).parent}")
    return real


def synthetic_endmembers(real: dict[str, datasets.HSIDataset], notes: list[str]) -> tuple[np.ndarray, tuple]:
    """Jasper Ridge's ground-truth endmembers (L = 198, R = 4) and names, for the synthetic scenes;
    looked up without the data folder (so the bundled copy at the latest) when that folder has no Jasper."""
    if "jasper" in real:
        return real["jasper"].endmembers, real["jasper"].names
    jasper = datasets.load_dataset("jasper")
    notes.append(f"synthetic scenes: Jasper Ridge endmembers read from {fetch.find_file('jasper', 'end4.mat')}")
    return jasper.endmembers, jasper.names


def build_scenes(cfg: dict, data_root: Path | None) -> tuple[list[Scene], list[str]]:
    notes: list[str] = []
    real = load_real(data_root, notes)
    S = cfg["seeds"]
    scenes = []
    M_syn, syn_names = synthetic_endmembers(real, notes)
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
