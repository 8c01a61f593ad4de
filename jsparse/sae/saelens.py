"""Export a jsparse `SAE` to the SAELens layout and load one back.

A SAELens SAE is a folder with `cfg.json` and `sae_weights.safetensors` holding
W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc (d_sae), b_dec (d_in) and, for "jumprelu",
threshold (d_sae). Inference semantics (SAELens v6, apply_b_dec_to_input=True):
    pre = (x - b_dec) W_enc + b_enc;  acts = ReLU(pre) ("standard"),
    ReLU(pre) * 1[pre > threshold] ("jumprelu"), ReLU of the top-k of pre ("topk");
    x_hat = acts W_dec + b_dec.
`saelens_forward` implements exactly that in NumPy (the reference for the round-trip tests).

Mapping of a jsparse SAE (input scale c, pre-bias b_pre, encoder rows w_enc, effective decoder
rows D = a * w_dec) with the scale folded in (so `normalize_activations` = "none"):
    W_enc = c w_enc^T, b_dec = b_pre / c, W_dec = D / c; b_enc = the encoder bias.
    relu -> standard; topk -> topk (k); jumprelu -> jumprelu (threshold = exp(log_threshold));
    batchtopk -> jumprelu with every threshold = the global inference threshold;
    adaptive, gate "jump" (GBA/BA): u * 1[u + b > 0] -> jumprelu with b_enc = 0, threshold = -b
    (exact when every b <= 0, which the GBA clamp keeps; a positive b raises ValueError);
    adaptive, gate "relu": ReLU(u + b) -> standard with b_enc = b.
"""
from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jsparse.core.errors import CorruptFileError
from jsparse.core.records import read_json, write_json

from .model import SAE, present

__all__ = ["export_saelens", "load_saelens", "read_saelens", "saelens_forward"]

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"


def _to_saelens(model: SAE) -> tuple[str, dict[str, np.ndarray], dict]:
    c = float(np.asarray(model.input_scale[...]))
    w_enc = np.asarray(model.w_enc[...], np.float64)
    dec = np.asarray(model.decoder_weight(), np.float64)
    M, d = w_enc.shape
    b_pre = np.asarray(model.b_pre[...], np.float64) if model.b_pre is not None else np.zeros(d)
    W = dict(W_enc=c * w_enc.T, W_dec=dec / c, b_dec=b_pre / c)
    extra: dict = {}
    a = model.activation
    b_enc = np.asarray(model.b_enc[...], np.float64) if model.b_enc is not None else np.zeros(M)  # adaptive: none
    if a == "relu":
        arch, W["b_enc"] = "standard", b_enc
    elif a == "topk":
        arch, W["b_enc"], extra["k"] = "topk", b_enc, int(present(model.k, "k"))
    elif a == "jumprelu":
        arch, W["b_enc"] = "jumprelu", b_enc
        W["threshold"] = np.exp(np.asarray(present(model.log_threshold, "log_threshold")[...], np.float64))
    elif a == "batchtopk":
        arch, W["b_enc"] = "jumprelu", b_enc
        W["threshold"] = np.full((M,), float(np.asarray(present(model.threshold, "threshold")[...])))
    else:  # adaptive
        b = np.asarray(present(model.bias, "bias")[...], np.float64)
        if model.gate == "relu":
            arch, W["b_enc"] = "standard", b
        else:
            if np.any(b > 0):
                raise ValueError(f"model: {int(np.sum(b > 0))} adaptive biases are > 0; the jump gate u*1[u+b>0] "
                                 "has no exact SAELens jumprelu form then (threshold = -b must be >= 0)")
            arch, W["b_enc"], W["threshold"] = "jumprelu", np.zeros(M), -b
    return arch, W, extra


def export_saelens(model: SAE, folder, *, model_name: str = "", hook_name: str = "", context_size: int = 128,
                   prepend_bos: bool = True, dtype: str = "float32", metadata: dict | None = None) -> Path:
    """Write `folder/cfg.json` and `folder/sae_weights.safetensors` (SAELens v6 layout)."""
    from safetensors.numpy import save_file

    if dtype not in ("float32", "float64", "float16"):
        raise ValueError(f"dtype: expected float32, float64 or float16, got {dtype!r}")
    arch, W, extra = _to_saelens(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = W["W_enc"].shape
    meta = dict(model_name=model_name, hook_name=hook_name, hook_head_index=None, context_size=context_size,
                prepend_bos=prepend_bos, seqpos_slice=[None], model_from_pretrained_kwargs={},
                sae_lens_version=None, sae_lens_training_version=None, exported_by="jsparse",
                jsparse_activation=model.activation)
    meta.update(metadata or {})
    cfg = dict(architecture=arch, d_in=int(d_in), d_sae=int(d_sae), dtype=dtype, device="cpu",
               apply_b_dec_to_input=True, normalize_activations="none", reshape_activations="none",
               metadata=meta, **extra)
    tensors = {k: np.ascontiguousarray(v, dtype) for k, v in W.items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(folder / WEIGHTS)
    write_json(folder / CFG, cfg)
    return folder


def _int_field(path: Path, cfg: dict, key: str, lo: int = 1) -> int:
    """cfg[key] as an int >= lo; CorruptFileError naming cfg.json when missing or not such an integer."""
    if key not in cfg:
        raise CorruptFileError(path, f"missing field {key!r}")
    v = cfg[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise CorruptFileError(path, f"field {key!r} is {v!r}, expected an integer >= {lo}")
    return v


def _read_cfg(path: Path) -> tuple[dict, int, int]:
    """(cfg, d_in, d_sae) of a SAELens cfg.json that jsparse can use; CorruptFileError otherwise."""
    cfg = read_json(path, "SAELens cfg.json")
    if not isinstance(cfg, dict):
        raise CorruptFileError(path, f"holds a {type(cfg).__name__}, expected a JSON object")
    d, m = _int_field(path, cfg, "d_in"), _int_field(path, cfg, "d_sae")
    arch = cfg.get("architecture", "standard")
    if arch not in ("standard", "jumprelu", "topk"):
        raise CorruptFileError(path, f"architecture {arch!r} not supported (standard, jumprelu, topk)")
    if arch == "topk" and _int_field(path, cfg, "k") > m:
        raise CorruptFileError(path, f"field 'k' is {cfg['k']}, more than d_sae={m}")
    if cfg.get("normalize_activations", "none") != "none":
        raise CorruptFileError(path, f"normalize_activations={cfg['normalize_activations']!r} not supported; "
                                     "fold the scaling into the weights first")
    if not cfg.get("apply_b_dec_to_input", True):
        raise CorruptFileError(path, "apply_b_dec_to_input=False is not supported")
    return cfg, d, m


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file; CorruptFileError when it is truncated or not safetensors."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises its own SafetensorError (not a ValueError) on damage
        raise CorruptFileError(path, f"unreadable safetensors file ({type(err).__name__}: {err})") from None


def read_saelens(folder) -> tuple[dict, dict[str, np.ndarray]]:
    """(cfg, tensors) of a SAELens folder, checked.

    Raises:
      FileNotFoundError: cfg.json or sae_weights.safetensors is missing.
      CorruptFileError (a ValueError) naming the file and the fault: cfg.json is not JSON, lacks
        d_in, d_sae (or k for topk) or asks for what jsparse cannot run; the weights file is
        truncated or not safetensors, misses a tensor, or holds one of another shape, a non-float
        dtype, or NaN/Inf values.
    """
    folder = Path(folder)
    cfg, d, m = _read_cfg(folder / CFG)
    wpath = folder / WEIGHTS
    W = _read_weights(wpath)
    want = dict(W_enc=(d, m), W_dec=(m, d), b_enc=(m,), b_dec=(d,))
    if cfg.get("architecture", "standard") == "jumprelu":
        want["threshold"] = (m,)
    for k, shape in want.items():
        if k not in W:
            raise CorruptFileError(wpath, f"missing tensor {k!r}")
        if tuple(W[k].shape) != shape:
            raise CorruptFileError(wpath, f"{k} has shape {W[k].shape}, cfg.json implies {shape}")
        if not np.issubdtype(W[k].dtype, np.floating):
            raise CorruptFileError(wpath, f"{k} has dtype {W[k].dtype}, expected a float dtype")
        if not np.all(np.isfinite(W[k])):
            raise CorruptFileError(wpath, f"{k} holds NaN or Inf values")
    cfg.setdefault("architecture", "standard")
    return cfg, W


def saelens_forward(cfg: dict, W: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAELens inference in float64 NumPy: (acts (B, d_sae), x_hat (B, d_in))."""
    x = np.asarray(x, np.float64)
    pre = (x - W["b_dec"]) @ W["W_enc"].astype(np.float64) + W["b_enc"]
    arch = cfg["architecture"]
    if arch == "standard":
        acts = np.maximum(pre, 0)
    elif arch == "jumprelu":
        acts = np.maximum(pre, 0) * (pre > W["threshold"])
    else:
        k = int(cfg["k"])
        idx = np.argsort(-pre, axis=1)[:, :k]
        acts = np.zeros_like(pre)
        np.put_along_axis(acts, idx, np.maximum(np.take_along_axis(pre, idx, 1), 0), 1)
    return acts, acts @ W["W_dec"].astype(np.float64) + W["b_dec"]


def load_saelens(folder, *, dtype=jnp.float32) -> SAE:
    """A jsparse `SAE` (untied, no output scale, input scale 1) computing what the SAELens folder
    computes: standard -> relu, topk -> topk, jumprelu -> jumprelu (a zero threshold becomes
    1e-30 since the jsparse JumpReLU stores log threshold)."""
    cfg, W = read_saelens(folder)
    act = dict(standard="relu", jumprelu="jumprelu", topk="topk")[cfg["architecture"]]
    d, m = int(cfg["d_in"]), int(cfg["d_sae"])
    model = SAE(d, m, activation=act, k=cfg.get("k"), tied=False, output_scale=False, rngs=nnx.Rngs(0), dtype=dtype)
    model.w_enc[...] = jnp.asarray(W["W_enc"].T, dtype)
    present(model.w_dec, "w_dec")[...] = jnp.asarray(W["W_dec"], dtype)
    present(model.b_pre, "b_pre")[...] = jnp.asarray(W["b_dec"], dtype)
    present(model.b_enc, "b_enc")[...] = jnp.asarray(W["b_enc"], dtype)
    if act == "jumprelu":
        theta = np.maximum(W["threshold"].astype(np.float64), 1e-30)
        present(model.log_threshold, "log_threshold")[...] = jnp.asarray(np.log(theta), dtype)
    return model
