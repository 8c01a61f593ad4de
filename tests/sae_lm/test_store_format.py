"""Store format stability: tiny stores written by the first version of the format (`fixtures/store_v1/`,
made by `write_fixture` below) open, read the same batches in the same order and dtype as when they
were written, and the writer still produces them byte for byte (the manifest gains only the SHA-256
of each file, `sha256` and `ids_sha256`; the fixture predates them and is verified by its crc32)."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from jsparse.core import records
from jsparse.sae import store as st

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"

# reader settings -> sha256 of (dtype, shape, bytes) of every batch, recorded when the fixture was written
READS = {
    "epoch": dict(batch_size=5, seed=3, buffer_rows=8, block_rows=3, epochs=2, drop_last=False),
    "threads1": dict(batch_size=5, seed=3, buffer_rows=8, block_rows=3, epochs=2, drop_last=False, threads=1),
    "resume": dict(batch_size=4, seed=1, buffer_rows=10, block_rows=2, epochs=3, start_batch=7),
    "outliers": dict(batch_size=3, seed=0, outlier_factor=1.5, drop_last=False),
    "ordered": dict(batch_size=6, shuffle=False, drop_last=False),
    "cast": dict(batch_size=5, seed=2, buffer_rows=12, block_rows=4, dtype=np.float32, scale=0.25),
}
EXPECTED = {
    "float32": {
        "epoch": "f9d17736f3f8ac08",
        "threads1": "f9d17736f3f8ac08",
        "resume": "ec5533b483b0cf5b",
        "outliers": "ee515ff4c539cbb7",
        "ordered": "d7ec6343a3ad98ea",
        "cast": "770adc5a8dcf8f55",
    },
    "float16": {
        "epoch": "cbbeb207d67941ba",
        "threads1": "cbbeb207d67941ba",
        "resume": "a27cb2cfcee3f172",
        "outliers": "7dd5be81b6f09282",
        "ordered": "c579cfed8a6b93e8",
        "cast": "770adc5a8dcf8f55",
    },
}


def write_fixture(path, dtype):
    """27 rows of d = 4 (exact in float16) from 6 items of 1-8 rows, shards of 7 rows, with ids."""
    w = st.ActivationWriter(path, 4, dtype=dtype, shard_rows=7, model="fixture", layer=2, with_ids=True,
                            meta={"made_by": "write_fixture"}, resume=False)
    for item in range(6):
        n = (item * 5) % 9 + 1
        x = (np.arange(n * 4, dtype=np.float32).reshape(n, 4) + 16 * item) / 8
        ids = np.stack([np.full(n, item), np.arange(n), 100 + np.arange(n)], 1).astype(np.int32)
        w.add(x, item, ids)
    w.close()


def digest(store, kw) -> str:
    h = hashlib.sha256()
    for b in store.batches(**kw):
        h.update(f"{b.dtype}{b.shape}".encode())
        h.update(np.ascontiguousarray(b).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_v1_store_reads_the_recorded_batches(dtype):
    s = st.ActivationStore(FIXTURE / dtype, verify=True)
    assert (s.d, s.dtype, s.num_tokens, s.complete, len(s.shards)) == (4, dtype, 27, True, 4)
    assert s.ids().shape == (27, 3) and s.ids().dtype == np.int32
    for name, kw in READS.items():
        assert digest(s, kw) == EXPECTED[dtype][name], name


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_writer_reproduces_v1_files(tmp_path, dtype):
    write_fixture(tmp_path / dtype, dtype)
    names = sorted(p.name for p in (FIXTURE / dtype).iterdir())
    assert sorted(p.name for p in (tmp_path / dtype).iterdir()) == names
    for name in names:
        if name != st.MANIFEST:
            assert (tmp_path / dtype / name).read_bytes() == (FIXTURE / dtype / name).read_bytes(), name
    # the manifest: the v1 bytes plus the SHA-256 of every file, which is the hash of that file's bytes
    m = json.loads((tmp_path / dtype / st.MANIFEST).read_text())
    for s in m["shards"]:
        for name_key, sha_key in (("file", "sha256"), ("ids_file", "ids_sha256")):
            assert s.pop(sha_key) == hashlib.sha256((FIXTURE / dtype / s[name_key]).read_bytes()).hexdigest()
    records.write_json(tmp_path / "v1.json", m)
    assert (tmp_path / "v1.json").read_bytes() == (FIXTURE / dtype / st.MANIFEST).read_bytes()
