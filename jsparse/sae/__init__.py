"""Sparse autoencoders with (Group) Bias Adaptation and the standard baselines.

Modules: `synthetic` (X = H V streams), `model` (the NNX SAE), `gba` (bias adaptation),
`methods` (GBA, BA, TopK, BatchTopK, ReLUL1, JumpReLU as values), `train` (one interface for
every method), `checkpoint` (resumable runs), `pipeline` (batch sources, validation, prefetch),
`metrics` (recovery, FVU, L0, dead, consistency).
"""
from . import gba, methods, metrics, model, synthetic
from .checkpoint import Checkpoint
from .methods import BA, GBA, METHODS, BatchTopK, JumpReLU, Method, ReLUL1, TopK, as_method
from .model import SAE
from .synthetic import SyntheticStream, make_stream
from .train import train

__all__ = ["gba", "methods", "metrics", "model", "synthetic", "SAE", "SyntheticStream", "make_stream", "METHODS",
           "Method", "GBA", "BA", "TopK", "BatchTopK", "ReLUL1", "JumpReLU", "as_method", "Checkpoint", "train"]
