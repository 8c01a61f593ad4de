"""Damaged BERT checkpoint folders: jsparse.CorruptFileError naming the file and the fault (not
JSONDecodeError, a JAX TypeError or the tokenizers library's bare Exception); missing files stay
FileNotFoundError."""
import json

import numpy as np
import pytest

from jsparse import CorruptFileError
from jsparse.sae.lm import bert
from tests.contract import assert_clear_error

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


def test_damaged_checkpoint_files_are_corrupt_file_errors(tiny_bert):
    from safetensors.numpy import load_file, save_file

    folder, cfg, _ = tiny_bert
    text = (folder / "config.json").read_text()
    cases = [(text[:20], "unreadable BERT config.json"), ("[]", "holds a list"),
             (json.dumps(dict(cfg, hidden_size="16")), "field 'hidden_size' is '16'"),
             (json.dumps(dict(cfg, num_attention_heads=5)), "hidden_size 16 is not a multiple of num_attention_heads 5"),
             (json.dumps(dict(cfg, layer_norm_eps=None)), "field 'layer_norm_eps'"),
             (json.dumps({k: v for k, v in cfg.items() if k != "vocab_size"}), "config lacks.*vocab_size")]
    for content, match in cases:
        (folder / "config.json").write_text(content)
        err = assert_clear_error(bert.load_bert, folder, match="config.json: " + match)
        assert isinstance(err, CorruptFileError) and err.path == str(folder / "config.json")
    (folder / "config.json").write_text(text)
    w = load_file(str(folder / "model.safetensors"))
    save_file(dict(w, **{"pooler.dense.bias": np.zeros(16, np.int32)}), str(folder / "model.safetensors"))
    assert_clear_error(bert.load_bert, folder, match="model.safetensors: tensor 'pooler.dense.bias' has dtype int32")
    tok = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(tok[:100])
    err = assert_clear_error(bert.load_tokenizer, folder, match="tokenizer.json: unreadable tokenizer file")
    assert isinstance(err, CorruptFileError)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        bert.load_tokenizer(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        bert.load_bert(folder)
