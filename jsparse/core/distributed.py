"""Data parallelism with JAX's own sharding: a 1-D "data" mesh, sharded batches, replicated state.

Training steps in jsparse are jitted functions of (state, batch). Placing the batch with
`shard_batch` (split along its leading axis over the mesh) and the parameters/optimizer state
with `replicate` is all it takes: XLA's SPMD partitioner runs the step on every device and
inserts the all-reduces that sums over the batch need (gradients, GBA's fire counts and maxima),
so a step on N devices computes what one device computes on the same global batch.

Multi-host: call `jax.distributed.initialize()` first; `jax.devices()` is then global and each
process passes its share of the global batch to `shard_batch(..., process_local=True)`.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["DATA_AXIS", "MODEL_AXIS", "data_mesh", "shard_batch", "replicate", "shard_axis_of_size"]

DATA_AXIS = "data"
MODEL_AXIS = "model"


def data_mesh(
    devices: Sequence[jax.Device] | None = None,  # pyright: ignore[reportInvalidTypeForm]  # untyped alias of a compiled class
    mesh: Mesh | None = None,
    axis: str = DATA_AXIS,
) -> Mesh:
    """A 1-D mesh over `devices` (default: all) with axis `axis`, or validate an explicit `mesh`.

    Also used by the Monte Carlo harness for its "trials" axis.
    """
    if mesh is not None:
        if axis not in mesh.axis_names:
            raise ValueError(f"mesh: expected an axis named {axis!r}, got axes {tuple(mesh.axis_names)}")
        return mesh
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: expected at least one device")
    return Mesh(np.asarray(devices), (axis,))


def shard_batch(batch: Any, mesh: Mesh, axis: str = DATA_AXIS, *, process_local: bool = False) -> Any:
    """Split every leaf of `batch` along its leading axis over the mesh axis `axis`.

    Args:
      batch: pytree of arrays with a common leading (batch) dimension.
      mesh: mesh with an axis named `axis`.
      process_local: the leaves are this process's share of the global batch (multi-host).

    Raises:
      ValueError: the batch size is not divisible by the number of devices on `axis`.
    """
    n = mesh.shape[axis]
    sharding = NamedSharding(mesh, P(axis))
    leaves = jax.tree_util.tree_leaves(batch)
    for leaf in leaves:
        size = np.shape(leaf)[0] * (jax.process_count() if process_local else 1)
        if size % n:
            raise ValueError(
                f"batch: leading dimension {size} is not divisible by the {n} devices on mesh axis {axis!r}"
            )
    if process_local:
        return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of `tree` on all devices of `mesh` (parameters, optimizer state)."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_axis_of_size(tree: Any, mesh: Mesh, size: int, axis: str = MODEL_AXIS) -> Any:
    """Shard, over mesh axis `axis`, the last dimension of length `size` of every leaf; replicate the rest.

    For wide SAEs: with `size` = the number of latents, the encoder/decoder matrices, biases,
    Adam moments and GBA statistics are split along the latent axis, so each device holds
    1/n of them. Leaves without such a dimension (or too small to split) are replicated.
    """
    n = mesh.shape[axis]
    if size % n:
        raise ValueError(f"width: {size} latents are not divisible by the {n} devices of mesh axis {axis!r}")

    def place(leaf):
        shape = np.shape(leaf)
        dims = [i for i, s in enumerate(shape) if s == size]
        spec: list[str | None] = [None] * len(shape)
        if dims:
            spec[dims[-1]] = axis
        return jax.device_put(leaf, NamedSharding(mesh, P(*spec)))

    return jax.tree_util.tree_map(place, tree)
