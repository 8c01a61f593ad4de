"""SAELens export/import: the exported folder, run by an independent NumPy implementation of
SAELens inference, reproduces the jsparse SAE's codes and reconstructions for every method; the
imported SAE reproduces them too; tensor names/shapes and cfg keys follow SAELens v6."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("safetensors")

from jsparse.sae import saelens  # noqa: E402
from jsparse.sae.train import METHODS, build  # noqa: E402


def _model(method, d=6, width=10, seed=0):
    key = jax.random.PRNGKey(seed)
    m = build(method, d, width, key, k=3 if method in ("topk", "batchtopk") else None)
    rng = np.random.default_rng(seed)
    m.input_scale[...] = jnp.asarray(0.37, jnp.float32)
    m.b_pre[...] = jnp.asarray(rng.normal(size=d) * 0.1, jnp.float32)
    if m.scale is not None:
        m.scale[...] = jnp.asarray(rng.uniform(0.5, 2, size=width), jnp.float32)
    if m.b_enc is not None:
        m.b_enc[...] = jnp.asarray(rng.normal(size=width) * 0.1, jnp.float32)
    if m.bias is not None:
        m.bias[...] = jnp.asarray(-rng.uniform(0, 0.3, size=width), jnp.float32)
    if m.log_threshold is not None:
        m.log_threshold[...] = jnp.asarray(np.log(rng.uniform(0.01, 0.3, size=width)), jnp.float32)
    if m.threshold is not None:
        m.threshold[...] = jnp.asarray(0.05, jnp.float32)
    return m


@pytest.mark.parametrize("method", METHODS)
def test_export_matches_saelens_semantics_and_round_trips(tmp_path, method):
    m = _model(method)
    x = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32) * 3
    codes = np.asarray(m.encode(jnp.asarray(x)))
    xhat = np.asarray(m(jnp.asarray(x)))
    assert np.mean(codes > 0) > 0.05  # the check is not vacuous
    folder = saelens.export_saelens(m, tmp_path / method, model_name="tiny", hook_name="blocks.3.hook_resid_post")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg_, W = saelens.read_saelens(folder)
    assert cfg["d_in"] == 6 and cfg["d_sae"] == 10 and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    assert W["W_enc"].shape == (6, 10) and W["W_dec"].shape == (10, 6) and W["b_enc"].shape == (10,)
    assert W["b_dec"].shape == (6,) and all(v.dtype == np.float32 for v in W.values())
    expected_arch = {"relu_l1": "standard", "topk": "topk"}.get(method, "jumprelu")
    assert cfg["architecture"] == expected_arch
    acts, rec = saelens.saelens_forward(cfg, W, x)
    np.testing.assert_allclose(acts, codes, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rec, xhat, rtol=1e-4, atol=1e-5)
    back = saelens.load_saelens(folder)
    np.testing.assert_allclose(np.asarray(back.encode(jnp.asarray(x))), codes, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(back(jnp.asarray(x))), xhat, rtol=1e-4, atol=1e-5)
    # export of the re-imported model reproduces the same tensors
    cfg2, W2 = saelens.read_saelens(saelens.export_saelens(back, tmp_path / (method + "2")))
    assert cfg2["architecture"] == cfg["architecture"]
    for k in W:
        np.testing.assert_allclose(W2[k], W[k], rtol=1e-5, atol=1e-6 if k != "threshold" else 1e-6)


def test_positive_gba_bias_refused_and_bad_folder_named(tmp_path):
    m = _model("gba")
    m.bias[...] = m.bias[...].at[0].set(0.1)
    with pytest.raises(ValueError, match="adaptive biases"):
        saelens.export_saelens(m, tmp_path / "x")
    f = saelens.export_saelens(_model("topk"), tmp_path / "t")
    cfg = json.loads((f / "cfg.json").read_text())
    cfg["d_sae"] = 11
    (f / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="sae_weights.safetensors.*W_enc"):
        saelens.load_saelens(f)


def test_damaged_folder_is_a_corrupt_file_error_naming_the_file(tmp_path):
    """Every damaged cfg.json or weights file: jsparse.CorruptFileError naming the file and the fault
    (not JSONDecodeError, KeyError or safetensors' own error); a missing file: FileNotFoundError."""
    from safetensors.numpy import load_file, save_file

    from jsparse import CorruptFileError
    from tests.contract import assert_clear_error

    f = saelens.export_saelens(_model("topk"), tmp_path / "t")
    cfg_text, weights = (f / "cfg.json").read_text(), (f / "sae_weights.safetensors").read_bytes()
    W = load_file(str(f / "sae_weights.safetensors"))

    def cfg_with(**kw):
        c = dict(json.loads(cfg_text), **kw)
        return json.dumps({k: v for k, v in c.items() if v is not None})

    cfg_cases = [(cfg_text[:40], "cfg.json: unreadable SAELens cfg.json"), ("[1, 2]", "cfg.json: holds a list"),
                 (cfg_with(d_in=None), "cfg.json: missing field 'd_in'"),
                 (cfg_with(d_sae="10"), "cfg.json: field 'd_sae' is '10'"),
                 (cfg_with(k=None), "cfg.json: missing field 'k'"), (cfg_with(k=11), "cfg.json: field 'k' is 11"),
                 (cfg_with(architecture="gated"), "cfg.json: architecture 'gated'"),
                 (cfg_with(normalize_activations="expected_average_only_in"), "cfg.json: normalize_activations")]
    weight_cases = [(weights[: len(weights) // 2], "unreadable safetensors file"), (b"\x00" * 7, "unreadable"),
                    (dict(W, W_dec=W["W_dec"].T.copy()), r"W_dec has shape \(6, 10\), cfg.json implies \(10, 6\)"),
                    ({k: v for k, v in W.items() if k != "b_enc"}, "missing tensor 'b_enc'"),
                    (dict(W, b_dec=W["b_dec"].astype(np.int32)), "b_dec has dtype int32"),
                    (dict(W, b_enc=np.full_like(W["b_enc"], np.nan)), "b_enc holds NaN")]
    for text, match in cfg_cases:
        (f / "cfg.json").write_text(text)
        for read in (saelens.read_saelens, saelens.load_saelens):
            err = assert_clear_error(read, f, match=match)
            assert isinstance(err, CorruptFileError) and err.path == str(f / "cfg.json")
    (f / "cfg.json").write_text(cfg_text)
    for content, match in weight_cases:
        if isinstance(content, bytes):
            (f / "sae_weights.safetensors").write_bytes(content)
        else:
            save_file(content, str(f / "sae_weights.safetensors"))
        err = assert_clear_error(saelens.load_saelens, f, match="sae_weights.safetensors: " + match)
        assert isinstance(err, CorruptFileError) and err.path == str(f / "sae_weights.safetensors")
    (f / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        saelens.read_saelens(f)
