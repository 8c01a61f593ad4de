"""Crash safety of the three trainers: SIGKILL at random checkpoints, three times, then resume.

One driver process per family imports jax (no backend started), forks a child that trains, and
kills it with SIGKILL after a random number (1-4) of new checkpoint files, three times (each run
writes at least 16 checkpoints, so a child never ends before its kill); then it
finishes the run itself and runs an uninterrupted reference in another folder. The final
parameters (and histories / records / exported weights) must be bit-identical.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

ROOT = Path(__file__).resolve().parent.parent

_DRIVER = r"""
import json, os, random, signal, sys, time
from pathlib import Path
import numpy as np
import jax

family, out, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
# every import before the forks (each child would otherwise pay for it); none starts a backend
if family == "sae":
    from flax import nnx
    from jsparse import sae
elif family == "cli":
    from jsparse.cli import main
    from jsparse.core import records
    from jsparse.sae import cli, saelens  # noqa: F401  (imported by the command)
    from jsparse.sae import store as st
    from jsparse.sae.store import reader
else:
    from jsparse.pruning import datasets, models, procedures, train
rng = random.Random(seed)
PAUSE = 0.005  # per batch / epoch, so that the kills land while the run is going


def run_sae(folder):
    def batch(i):
        time.sleep(PAUSE)
        return np.random.default_rng(i).normal(size=(32, 8)).astype(np.float32)

    model, hist = sae.train(batch, method="topk", k=2, width=16, steps=60, key=0, log_every=5,
                            checkpoint_dir=folder, checkpoint_every=2, show_progress=False)
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(model))] + [hist[k] for k in sorted(hist)]


def make_store():
    x = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    st.harvest(out / "store", range(4), lambda i: (x[i * 100:(i + 1) * 100], None), d=8, shard_rows=128,
               model="m", layer=0, show_progress=False)


def run_cli(folder):
    plain = reader.StoreStream.batch
    reader.StoreStream.batch = lambda self, i: (time.sleep(PAUSE), plain(self, i))[1]
    argv = ["sae", "train", "--store", str(out / "store"), "--out", str(folder), "--method", "topk", "--k", "2",
            "--width", "16", "--steps", "60", "--batch-size", "16", "--checkpoint-every", "2"]
    assert main(argv) == 0
    arrays = records.load_arrays(folder / "checkpoint" / "state.npz")
    weights = np.frombuffer((folder / "saelens" / "sae_weights.safetensors").read_bytes(), np.uint8)
    result = json.loads((folder / "result.json").read_text())
    return [arrays[k] for k in sorted(arrays)] + [weights, np.asarray(json.dumps(result, sort_keys=True))]


def run_pruning(folder):
    g = np.random.default_rng(0)
    y = g.integers(0, 3, 96).astype(np.int32)
    x = (g.normal(size=(3, 4, 4, 1))[y] + 0.3 * g.normal(size=(96, 4, 4, 1))).astype(np.float32)
    data = datasets.Dataset(x[:64], y[:64], x[64:], y[64:], 3, "toy", False)
    tr = train.Trainer(models.build("mlp", (4, 4, 1), 3, seed=0), steps_per_round=8, batch_size=16, eval_batch_size=16)
    plain = tr.train_epoch
    tr.train_epoch = lambda *a: (time.sleep(4 * PAUSE), plain(*a))[1]
    res = procedures.run_procedure(tr, data, procedures.make_rule("sap"), method="sap", rounds=0, epochs=16,
                                   out_dir=folder)
    rows = json.dumps(res.records, sort_keys=True)
    return [np.asarray(v) for v in jax.tree_util.tree_leaves((res.params, res.masks))] + [np.asarray(rows)]


def versions(folder):
    found = set()
    for p in folder.rglob("*.npz"):
        try:
            st = p.stat()
        except FileNotFoundError:  # a finished round's epoch checkpoint was just removed
            continue
        found.add((str(p), st.st_ino, st.st_mtime_ns))
    return found


run = {"sae": run_sae, "cli": run_cli, "pruning": run_pruning}[family]
if family == "cli":
    make_store()
work, kills = out / "run", []
for attempt in range(3):
    seen, new, target = versions(work), set(), rng.randint(1, 4)
    sys.stdout.flush()
    pid = os.fork()  # jax is imported but no backend started: each child starts its own
    if pid == 0:
        code = 0
        try:
            run(work)
        except BaseException:  # a resume that fails is the bug this test is for: show it
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while len(new) < target:  # checkpoint versions written by this child (a fast one may be missed)
        done, status = os.waitpid(pid, os.WNOHANG)
        assert done == 0, f"the run ended before kill {attempt + 1} (exit status {status}; see its traceback)"
        time.sleep(0.0005)
        new |= versions(work) - seen
    time.sleep(rng.uniform(0.0, 0.005))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), f"the run ended before kill {attempt + 1}"
    kills.append(len(new))
got, ref = run(work), run(out / "ref")
same = [a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, ref)]
print("RESULT " + json.dumps(dict(kills=kills, leaves=len(ref), different=[i for i, s in enumerate(same) if not s])))
"""


@pytest.mark.parametrize("family", ["sae", "cli", "pruning"])
def test_sigkilled_three_times_then_resumed_is_bit_identical(tmp_path, family):
    if family == "cli":
        pytest.importorskip("safetensors")  # the CLI's SAELens export
    env = dict(os.environ, JSPARSE_PROGRESS="0", JAX_PLATFORMS="cpu")
    seed = int(np.random.SeedSequence().entropy % 1000)
    proc = subprocess.run([sys.executable, "-c", _DRIVER, family, str(tmp_path), str(seed)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"seed {seed}\n" + proc.stdout[-2000:] + proc.stderr[-4000:]
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    assert len(res["kills"]) == 3 and all(k >= 1 for k in res["kills"]), res
    assert res["leaves"] > 3 and res["different"] == [], (seed, res)
