"""Pruning from a sparsity perspective (Diao et al., ICLR 2023): PQ Index, SAP, baselines.

* `pq_index`, `pq_index_per_layer`, `pq_index_per_neuron`, `retained_bound` — the PQ Index and r.
* `SAP`, `Magnitude` / `magnitude` — pruning rules on (params, masks) pytrees;
  `init_masks`, `apply_masks`, `remaining`.
* `masked`, `set_masks`, `get_masks` — optax wrapper holding masks in its state.
* `models`, `train`, `procedures`, `datasets` — Flax NNX models, jitted training, the SAP /
  lottery-ticket / one-shot loops with checkpoints, and data loaders (import the submodules).
"""
from jsparse.pruning.masked import MaskedState, get_masks, masked, set_masks
from jsparse.pruning.pq_index import (
    default_filter,
    pq_index,
    pq_index_per_layer,
    pq_index_per_neuron,
    retained_bound,
)
from jsparse.pruning.rules import (
    SAP,
    Magnitude,
    PruneInfo,
    apply_masks,
    init_masks,
    kth_smallest,
    kth_smallest_rows,
    magnitude,
    remaining,
)

__all__ = [
    "pq_index", "pq_index_per_layer", "pq_index_per_neuron", "retained_bound", "default_filter",
    "SAP", "Magnitude", "magnitude", "PruneInfo", "init_masks", "apply_masks", "remaining",
    "kth_smallest", "kth_smallest_rows",
    "masked", "set_masks", "get_masks", "MaskedState",
]
