"""Language-model activations for SAEs: a Flax NNX BERT loaded from a Hugging Face folder
(`bert`) and a no-download text corpus, the interpreter's standard library (`corpus`).
Needs the `lm` extra (safetensors, tokenizers) to load checkpoints."""
from . import corpus
from .bert import Bert, BertConfig, encode_texts, load_bert, load_tokenizer

__all__ = ["corpus", "Bert", "BertConfig", "encode_texts", "load_bert", "load_tokenizer"]
