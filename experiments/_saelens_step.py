"""SAELens's own training step on CPU, for `experiments.bench_sae --vs-saelens` (imports torch and
sae_lens, never jax: its peak-memory child measures SAELens alone).

Each SAE is SAELens's training class with its default settings (its `*TrainingSAEConfig` with only
d_in, d_sae and k given) driven by `SAETrainer.step` with the trainer's defaults (Adam, lr 3e-4,
constant schedule, gradient clipping at norm 1, dead-feature window 1000): what `fit` runs per
batch. Needs `pip install -e ".[bench]"`.

    python -m experiments._saelens_step --peak topk 768 4096   # child: peak RSS of 2 steps
"""
from __future__ import annotations

import argparse
import json
import resource
import time

# jsparse method -> SAELens architecture (GBA has no SAELens form: it is timed against TopK)
ARCH = {"topk": "topk", "batchtopk": "batchtopk", "relu_l1": "standard", "jumprelu": "jumprelu", "gba": "topk"}


def available() -> str | None:
    """None when torch and sae_lens import, else the install advice."""
    try:
        import sae_lens  # pyright: ignore[reportMissingImports]  # noqa: F401
        import torch  # pyright: ignore[reportMissingImports]  # noqa: F401
    except ImportError as e:
        return f"{e}; install the bench extra: pip install -e \".[bench]\""
    return None


def make(method: str, d: int, batch: int, k: int = 32, seed: int = 0):
    """A callable step() that runs one SAELens trainer step on a fixed random (batch, d) batch."""
    import torch  # pyright: ignore[reportMissingImports]
    from sae_lens import SAETrainer  # pyright: ignore[reportMissingImports]
    from sae_lens.config import SAETrainerConfig  # pyright: ignore[reportMissingImports]
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig  # pyright: ignore[reportMissingImports]
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig  # pyright: ignore[reportMissingImports]
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig  # pyright: ignore[reportMissingImports]
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig  # pyright: ignore[reportMissingImports]

    torch.manual_seed(seed)
    arch = ARCH[method]
    width = 16 * d
    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=width, k=k))
    elif arch == "batchtopk":
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d, d_sae=width, k=k))
    elif arch == "standard":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d, d_sae=width))
    else:
        sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d, d_sae=width))
    x = torch.randn(batch, d)
    lr = 3e-4  # the runner's default; lr_end is the runner's lr / 10
    trainer = SAETrainer(SAETrainerConfig(total_training_samples=10**12, train_batch_size_samples=batch, lr=lr,
                                          lr_end=lr / 10), sae, iter(lambda: x, None))

    def step():
        trainer.step(x)
        trainer.n_training_steps += 1

    return step


def peak(method: str, d: int, batch: int, steps: int = 2) -> dict:
    """Peak RSS (GiB) of this process after building the SAE and running `steps` steps."""
    step = make(method, d, batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return dict(peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak", nargs=3, metavar=("METHOD", "D", "BATCH"), required=True)
    a = ap.parse_args()
    print(json.dumps(peak(a.peak[0], int(a.peak[1]), int(a.peak[2]))))
