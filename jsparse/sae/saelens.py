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

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

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
    from jsparse.core.records import write_json

    write_json(folder / CFG, cfg)
    return folder


def read_saelens(folder) -> tuple[dict, dict[str, np.ndarray]]:
    """(cfg, tensors) of a SAELens folder, checked: ValueError naming the file on missing tensors
    or shapes that disagree with cfg.json."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    cfg = json.loads((folder / CFG).read_text())
    arch = cfg.get("architecture", "standard")
    if arch not in ("standard", "jumprelu", "topk"):
        raise ValueError(f"{folder / CFG}: architecture {arch!r} not supported (standard, jumprelu, topk)")
    if cfg.get("normalize_activations", "none") != "none":
        raise ValueError(f"{folder / CFG}: normalize_activations={cfg['normalize_activations']!r}; fold the scaling "
                         "into the weights first")
    if not cfg.get("apply_b_dec_to_input", True):
        raise ValueError(f"{folder / CFG}: apply_b_dec_to_input=False is not supported")
    try:
        W = load_file(str(folder / WEIGHTS))
    except Exception as err:
        raise ValueError(f"{folder / WEIGHTS}: unreadable ({err})") from None
    d, m = int(cfg["d_in"]), int(cfg["d_sae"])
    want = dict(W_enc=(d, m), W_dec=(m, d), b_enc=(m,), b_dec=(d,))
    if arch == "jumprelu":
        want["threshold"] = (m,)
    for k, shape in want.items():
        if k not in W:
            raise ValueError(f"{folder / WEIGHTS}: missing tensor {k!r}")
        if tuple(W[k].shape) != shape:
            raise ValueError(f"{folder / WEIGHTS}: {k} has shape {W[k].shape}, cfg.json implies {shape}")
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
