"""Fixtures for tests/sae_lm: tiny randomly initialised BERT checkpoints in the HF layout."""
import json

import numpy as np
import pytest

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "def", "return", "import", "os", "the", "fox",
         "(", ")", ":", ",", ".", "=", "x", "y", "a", "b", "##s", "##ed", "print", "self", "class"]


def write_tiny_bert(folder, *, hidden=16, layers=2, heads=4, inter=32, seed=0, prefix=""):
    """config.json, model.safetensors (random weights, HF BertModel names) and a WordPiece
    tokenizer.json with BERT's post-processor ([CLS] ... [SEP])."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=inter, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
               hidden_act="gelu", model_type="bert")
    (folder / "config.json").write_text(json.dumps(cfg))

    def r(*shape, s=0.3):
        return (rng.normal(size=shape) * s).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": r(len(VOCAB), hidden),
         "embeddings.position_embeddings.weight": r(64, hidden),
         "embeddings.token_type_embeddings.weight": r(2, hidden),
         "embeddings.LayerNorm.weight": 1 + r(hidden, s=0.1), "embeddings.LayerNorm.bias": r(hidden, s=0.1),
         "pooler.dense.weight": r(hidden, hidden), "pooler.dense.bias": r(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            w[p + n + ".weight"], w[p + n + ".bias"] = r(hidden, hidden), r(hidden, s=0.1)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(inter, hidden), r(inter, s=0.1)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(hidden, inter), r(hidden, s=0.1)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + n + ".weight"], w[p + n + ".bias"] = 1 + r(hidden, s=0.1), r(hidden, s=0.1)
    save_file({prefix + k: v for k, v in w.items()}, str(folder / "model.safetensors"))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    return cfg, w


@pytest.fixture
def tiny_bert(tmp_path):
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    folder = tmp_path / "tiny_bert"
    cfg, w = write_tiny_bert(folder)
    return folder, cfg, w
