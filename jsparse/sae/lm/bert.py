"""A BERT-family encoder in Flax NNX, loaded from a Hugging Face checkpoint folder.

The folder holds `config.json` (BertConfig keys), `model.safetensors` (read with the
`safetensors.numpy` API; no torch) and `tokenizer.json` (the `tokenizers` library). Both libraries
are the optional `lm` extra: `pip install -e ".[lm]"` in a source checkout.

Forward pass (post-LayerNorm BERT, as `transformers.BertModel` in eval mode, no dropout):
    h_0 = LN(E_word[ids] + E_pos[0..T-1] + E_type[type_ids])
    a   = LN(h + Dense(MHA(h, mask)));  h_{l+1} = LN(a + Dense(gelu(Dense(a))))
`hidden_states[l]` (l = 0..L) follows the `output_hidden_states` convention: index 0 is the
embedding output and index l the residual stream after block l, each (B, T, H).
Pooling: `pooler` = tanh(Dense(h_L[:, 0])) (BertModel.pooler_output); `mean_pool` = the
attention-mask mean of h_L (sentence-transformers' pooling for all-MiniLM-L6-v2).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jsparse.core.errors import CorruptFileError
from jsparse.core.records import read_json

__all__ = ["BertConfig", "Bert", "forward", "layer_activations", "load_bert", "load_tokenizer", "encode_texts",
           "require_lm"]


def require_lm():
    """Import the `lm` extra (safetensors, tokenizers) or raise ImportError saying how to install it."""
    try:
        import safetensors.numpy  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f'{err}; install the lm extra: pip install -e ".[lm]" in the jsparse checkout (safetensors, tokenizers)'
        ) from None


class BertConfig(NamedTuple):
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        """The config of a Hugging Face `config.json`; CorruptFileError naming it when it is not JSON,
        lacks a field, holds a field of the wrong type or a setting this encoder does not implement."""
        d = read_json(path, "BERT config.json")
        if not isinstance(d, dict):
            raise CorruptFileError(path, f"holds a {type(d).__name__}, expected a JSON object")
        missing = [k for k in cls._fields[:5] if k not in d]
        if missing:
            raise CorruptFileError(path, f"config lacks {missing}")
        for k in cls._fields[:7]:
            if k in d and (not isinstance(d[k], int) or isinstance(d[k], bool) or d[k] < 1):
                raise CorruptFileError(path, f"field {k!r} is {d[k]!r}, expected an integer >= 1")
        eps = d.get("layer_norm_eps", 1e-12)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise CorruptFileError(path, f"field 'layer_norm_eps' is {eps!r}, expected a number >= 0")
        if d["hidden_size"] % d["num_attention_heads"]:
            raise CorruptFileError(path, f"hidden_size {d['hidden_size']} is not a multiple of num_attention_heads "
                                         f"{d['num_attention_heads']}")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise CorruptFileError(path, "only absolute position embeddings are supported")
        if d.get("hidden_act", "gelu") not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise CorruptFileError(path, f"unsupported hidden_act {d.get('hidden_act')!r}")
        return cls(**{k: d[k] for k in cls._fields if k in d})


def _act(name: str, x):
    if name == "gelu":  # exact erf GELU, as torch's default
        return jax.nn.gelu(x, approximate=False)
    if name == "relu":
        return jax.nn.relu(x)
    return jax.nn.gelu(x, approximate=True)


class _Dense(nnx.Module):
    """y = x W^T + b with the torch layout W (out, in) kept as is (weights load without transposes)."""

    def __init__(self, n_in: int, n_out: int, dtype):
        self.weight = nnx.Param(jnp.zeros((n_out, n_in), dtype))
        self.bias = nnx.Param(jnp.zeros((n_out,), dtype))

    def __call__(self, x):
        y = jnp.einsum("...i,oi->...o", x, self.weight[...], precision=jax.lax.Precision.HIGHEST)
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


class _LayerNorm(nnx.Module):
    def __init__(self, n: int, eps: float, dtype):
        self.weight = nnx.Param(jnp.ones((n,), dtype))
        self.bias = nnx.Param(jnp.zeros((n,), dtype))
        self.eps = eps

    def __call__(self, x):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
        shape = (1,) * (x.ndim - 1) + (-1,)
        scale, shift = self.weight[...].reshape(shape), self.bias[...].reshape(shape)
        return (x - mu) * jax.lax.rsqrt(var + self.eps) * scale + shift


class _Layer(nnx.Module):
    def __init__(self, c: BertConfig, dtype):
        h, i = c.hidden_size, c.intermediate_size
        self.query, self.key, self.value = _Dense(h, h, dtype), _Dense(h, h, dtype), _Dense(h, h, dtype)
        self.attn_out = _Dense(h, h, dtype)
        self.attn_ln = _LayerNorm(h, c.layer_norm_eps, dtype)
        self.inter = _Dense(h, i, dtype)
        self.out = _Dense(i, h, dtype)
        self.out_ln = _LayerNorm(h, c.layer_norm_eps, dtype)
        self.heads, self.act = c.num_attention_heads, c.hidden_act

    def __call__(self, x, mask):
        B, T, H = x.shape
        nh = self.heads

        def split(y):
            return y.reshape(B, T, nh, H // nh)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        hp = jax.lax.Precision.HIGHEST
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=hp) / math.sqrt(H // nh)
        s = jnp.where(mask[:, None, None, :], s, jnp.finfo(s.dtype).min)
        p = jax.nn.softmax(s, axis=-1)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", p, v, precision=hp).reshape(B, T, H)
        a = self.attn_ln(x + self.attn_out(ctx))
        return self.out_ln(a + self.out(_act(self.act, self.inter(a))))


class Bert(nnx.Module):
    """BERT encoder. `__call__(ids, mask, type_ids=None, upto=None)` -> list of hidden states
    [h_0, ..., h_upto] each (B, T, H) (upto defaults to all layers). ids, type_ids (B, T) int;
    mask (B, T) bool/int (1 = real token)."""

    def __init__(self, config: BertConfig, *, dtype=jnp.float32):
        c = config
        self.config = c
        self.word = nnx.Param(jnp.zeros((c.vocab_size, c.hidden_size), dtype))
        self.pos = nnx.Param(jnp.zeros((c.max_position_embeddings, c.hidden_size), dtype))
        self.type = nnx.Param(jnp.zeros((c.type_vocab_size, c.hidden_size), dtype))
        self.emb_ln = _LayerNorm(c.hidden_size, c.layer_norm_eps, dtype)
        self.layers = nnx.List([_Layer(c, dtype) for _ in range(c.num_hidden_layers)])
        self.pool = _Dense(c.hidden_size, c.hidden_size, dtype)

    def __call__(self, ids, mask, type_ids=None, upto: int | None = None):
        T = ids.shape[1]
        if T > self.config.max_position_embeddings:
            raise ValueError(f"ids: {T} tokens exceed max_position_embeddings {self.config.max_position_embeddings}")
        type_ids = jnp.zeros_like(ids) if type_ids is None else type_ids
        h = self.word[...][ids] + self.pos[...][None, :T, :] + self.type[...][type_ids]
        h = self.emb_ln(h)
        mask = jnp.asarray(mask).astype(bool)
        upto = self.config.num_hidden_layers if upto is None else upto
        hs = [h]
        for layer in self.layers[:upto]:
            h = layer(h, mask)
            hs.append(h)
        return hs

    def pooler(self, last):
        """BertModel.pooler_output: tanh(Dense(h_L[:, 0])), (B, H)."""
        return jnp.tanh(self.pool(last[:, 0]))

    @staticmethod
    def mean_pool(last, mask):
        """Attention-mask mean of the tokens, (B, H) (sentence-transformers mean pooling)."""
        m = jnp.asarray(mask, last.dtype)[..., None]
        return jnp.sum(last * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


@nnx.jit(static_argnames=("upto",))
def forward(model: Bert, ids, mask, type_ids=None, upto: int | None = None):
    """Jitted `model(ids, mask, type_ids, upto)`: the list of hidden states h_0..h_upto."""
    return model(ids, mask, type_ids, upto=upto)


@nnx.jit(static_argnames=("layer",))
def layer_activations(model: Bert, ids, mask, layer: int):
    """Jitted residual stream after block `layer` (0 = embeddings), (B, T, H); blocks above
    `layer` are not computed."""
    return model(ids, mask, upto=layer)[layer]


def _mapping(c: BertConfig) -> dict[str, tuple]:
    """HF tensor name -> path of the NNX variable."""
    m = {
        "embeddings.word_embeddings.weight": ("word",),
        "embeddings.position_embeddings.weight": ("pos",),
        "embeddings.token_type_embeddings.weight": ("type",),
        "embeddings.LayerNorm.weight": ("emb_ln", "weight"),
        "embeddings.LayerNorm.bias": ("emb_ln", "bias"),
        "pooler.dense.weight": ("pool", "weight"),
        "pooler.dense.bias": ("pool", "bias"),
    }
    sub = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
           "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_ln",
           "intermediate.dense": "inter", "output.dense": "out", "output.LayerNorm": "out_ln"}
    for i in range(c.num_hidden_layers):
        for hf, ours in sub.items():
            for p in ("weight", "bias"):
                m[f"encoder.layer.{i}.{hf}.{p}"] = ("layers", i, ours, p)
    return m


def load_bert(folder, *, dtype=jnp.float32) -> Bert:
    """A `Bert` with the weights of `folder/model.safetensors` (HF BertModel names; a `bert.`
    prefix, as in BertForMaskedLM checkpoints, is stripped). A missing pooler is left at zero.

    Raises:
      FileNotFoundError: config.json or model.safetensors is missing.
      CorruptFileError (a ValueError) naming the file and the fault: a damaged config.json (see
        `BertConfig.from_json`), a truncated or non-safetensors weights file, a missing tensor, or
        one of another shape or a non-float dtype.
    """
    require_lm()
    from safetensors.numpy import load_file

    folder = Path(folder)
    c = BertConfig.from_json(folder / "config.json")
    f = folder / "model.safetensors"
    try:
        w = load_file(str(f))
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises its own SafetensorError (not a ValueError) on damage
        raise CorruptFileError(f, f"unreadable safetensors file ({type(err).__name__}: {err})") from None
    w = {(k[5:] if k.startswith("bert.") else k): v for k, v in w.items()}
    model = Bert(c, dtype=dtype)
    for name, path in _mapping(c).items():
        if name not in w:
            if name.startswith("pooler."):
                continue
            raise CorruptFileError(f, f"missing tensor {name!r}")
        obj: Any = model  # walked down to the nnx.Param that holds the tensor
        for p in path:
            obj = obj[p] if isinstance(p, int) else getattr(obj, p)
        if tuple(obj.shape) != tuple(w[name].shape):
            raise CorruptFileError(f, f"tensor {name!r} has shape {w[name].shape}, config.json implies {obj.shape}")
        if not np.issubdtype(w[name].dtype, np.floating):
            raise CorruptFileError(f, f"tensor {name!r} has dtype {w[name].dtype}, expected a float dtype")
        obj[...] = jnp.asarray(w[name], dtype)
    return model


def load_tokenizer(folder, max_length: int = 128):
    """The folder's `tokenizer.json` (a `tokenizers.Tokenizer`), truncating to max_length, no padding.
    FileNotFoundError when it is missing; CorruptFileError naming it when the tokenizers library cannot read it."""
    require_lm()
    from tokenizers import Tokenizer

    f = Path(folder) / "tokenizer.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no such file")
    try:
        tok = Tokenizer.from_file(str(f))
    except Exception as err:  # tokenizers raises a bare Exception on a damaged file
        raise CorruptFileError(f, f"unreadable tokenizer file ({type(err).__name__}: {err})") from None
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def encode_texts(tok, texts: list[str], length: int | None = None, pad_id: int = 0):
    """Tokenise and pad to `length` (default: the longest). Returns int32 ids (B, T), bool mask
    (B, T), int32 type_ids (B, T) and the per-text token lists."""
    encs = tok.encode_batch(list(texts))
    T = length or max(len(e.ids) for e in encs)
    ids = np.full((len(encs), T), pad_id, np.int32)
    mask = np.zeros((len(encs), T), bool)
    types = np.zeros((len(encs), T), np.int32)
    for i, e in enumerate(encs):
        n = min(len(e.ids), T)
        ids[i, :n], mask[i, :n], types[i, :n] = e.ids[:n], True, e.type_ids[:n]
    return ids, mask, types, [e.tokens for e in encs]
