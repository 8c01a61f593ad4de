"""Sparse autoencoders with (Group) Bias Adaptation and the standard baselines.

Modules: `synthetic` (X = H V streams), `model` (the NNX SAE), `gba` (bias adaptation),
`train` (one interface for every method), `pipeline` (batch sources, validation, prefetch),
`metrics` (recovery, FVU, L0, dead, consistency).
"""
from . import gba, metrics, model, synthetic
from .model import SAE
from .synthetic import SyntheticStream, make_stream
from .train import METHODS, train

__all__ = ["gba", "metrics", "model", "synthetic", "SAE", "SyntheticStream", "make_stream", "METHODS", "train"]
