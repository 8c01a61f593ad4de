"""Activation store: sharded `.npy` activations on disk with a JSON manifest.

Layout of a store folder (`layout`):
    manifest.json        model, layer, dtype, d, num_tokens, normalisation constant, shards
                         (per shard: file, rows, crc32 and SHA-256 of its bytes, sum of squared norms)
    shard_00000.npy      (rows, d) activations in the store dtype (float32 or float16)
    ids_00000.npy        optional (rows, 3) int32: (document, position, token id) of each row

Writing (`writer`: `ActivationWriter`, `harvest`) fills fixed-size shards, each written atomically
before the manifest lists it, and resumes an unfinished harvest from the manifest's cursor after
verifying every shard already written against its checksum.
Reading (`reader`: `ActivationStore`, `StoreStream`, `device_batches`) memory-maps and checks the
shards (`checks`: a damaged manifest or shard raises `jsparse.CorruptFileError` naming it; each
shard's checksum is verified before its rows are used, or at open with verify="full"), streams
shuffled batches with bounded memory (block shuffle across shards, every row once per epoch), and
moves batches to the device ahead of compute with the normalisation applied there
(x * c with c = 1 / sqrt(mean ||x||^2), unit mean squared norm).
"""
from .layout import FORMAT, MANIFEST
from .reader import ActivationStore, StoreStream, device_batches
from .writer import ActivationWriter, harvest

__all__ = ["ActivationWriter", "ActivationStore", "harvest", "device_batches", "StoreStream", "MANIFEST", "FORMAT"]
