"""Honest sweep caches: code fingerprints, refused stale folders, sealed chunks, crash-safe resume."""
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import CorruptFileError
from jsparse.core import montecarlo
from jsparse.core.code_fingerprint import code_fingerprint
from tests.contract import assert_clear_error

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

ROOT = Path(__file__).resolve().parents[2]
GRID = {"x": [1.0, 2.0]}
ARGS = dict(num_trials=4, chunk_size=4, progress=False)  # 2 chunks, one compiled shape for the whole file


def _named(fn):
    fn.__qualname__ = fn.__name__ = "trial"  # the same name, as after editing a function in place
    return fn


def _trial_v1():
    return _named(lambda key, x: {"v": jax.random.normal(key, ()) + x})


def _trial_v2():  # the "edited" body
    return _named(lambda key, x: {"v": jax.random.normal(key, ()) + 2 * x})


TRIAL_V1, TRIAL_V2 = _trial_v1(), _trial_v2()


def _chunk(folder, c=0):
    return folder / "sweep" / "chunks" / f"static000_chunk{c:05d}.npz"


# --- the code fingerprint -------------------------------------------------------------------------

SCALE = 3.0


def _helper(x):
    return x * SCALE


def _uses_helper(x):
    return _helper(x) + 1


def _attribute_only(key):
    return jax.random.normal(key, ())


@dataclasses.dataclass
class _Scaled:
    factor: float

    def __call__(self, x):
        return x * self.factor

    def method(self, x):
        return x + self.factor


def test_fingerprint_sees_code_defaults_closures_globals_and_wrappers(monkeypatch):
    def closure(c):
        return lambda x: x + c

    def with_default(x, n=2):
        return x * n

    def with_default_3(x, n=3):
        return x * n

    fp = code_fingerprint
    assert fp(_trial_v1()) == fp(_trial_v1()) != fp(_trial_v2())  # the body, not only the name
    assert fp(closure(1.0)) != fp(closure(2.0)) and fp(closure(np.ones(3))) != fp(closure(np.zeros(3)))
    assert fp(with_default) != fp(_named(with_default_3)) != fp(_named(with_default))
    attribute_only = fp(_attribute_only)
    monkeypatch.setattr(sys.modules[__name__], "random", 5, raising=False)  # `jax.random` is not this global
    assert fp(_attribute_only) == attribute_only
    before = fp(_uses_helper)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 4.0)  # a global read by a helper it calls
    assert fp(_uses_helper) != before
    assert fp(functools.partial(with_default, n=4)) != fp(functools.partial(with_default, n=5))
    assert fp(jax.jit(with_default)) == fp(jax.jit(with_default)) != fp(jax.jit(with_default_3))
    assert fp(_Scaled(2.0)) != fp(_Scaled(3.0)) and fp(_Scaled(2.0).method) != fp(_Scaled(3.0).method)
    assert fp(lambda x: {"a": 1, "b": {1, 2}}) == fp(lambda x: {"a": 1, "b": {1, 2}})
    calls, config = [], [1.0]

    def logs(x):
        calls.append(x)  # a log filled at trace time is an output, not an input
        return x * config[0]

    before = fp(logs)
    calls.append(1)
    assert fp(logs) == before
    config[0] = 2.0  # a list that is read is data
    assert fp(logs) != before


def test_fingerprint_of_a_class_without_source_file_hashes_its_methods(monkeypatch):
    """Classes typed into a notebook or `python -c` have no file to hash: their methods are hashed."""
    import types

    monkeypatch.setitem(sys.modules, "notebook_cell", types.ModuleType("notebook_cell"))

    def define(body):
        ns = {"__name__": "notebook_cell"}
        exec(f"class Model:\n    def go(self, x):\n        return {body}\ndef f(x):\n    return Model().go(x)\n", ns)
        return ns["f"]

    assert code_fingerprint(define("x + 1")) == code_fingerprint(define("x + 1")) != code_fingerprint(define("x + 2"))


def test_fingerprint_of_unknown_objects_warns_once_and_has_no_addresses():
    class Opaque:
        __slots__ = ()

    def uses(x, o=Opaque()):
        return x

    with pytest.warns(UserWarning, match="repr only"):
        a = code_fingerprint(uses)
    assert a == code_fingerprint(uses)  # no memory address in the hash


# --- refused and recomputed folders ----------------------------------------------------------------

def test_edited_trial_function_is_refused_then_recomputed(tmp_path):
    old = montecarlo.sweep(TRIAL_V1, GRID, out_dir=tmp_path, **ARGS)
    assert_clear_error(montecarlo.sweep, TRIAL_V2, GRID, out_dir=tmp_path, match="trial_fn_code", **ARGS)
    with pytest.warns(UserWarning, match="trial_fn_code.*recomputing"):
        new = montecarlo.sweep(TRIAL_V2, GRID, out_dir=tmp_path, on_mismatch="recompute", **ARGS)
    fresh = montecarlo.sweep(TRIAL_V2, GRID, **ARGS)
    assert fresh.meta["trial_fn_code"] is None  # nothing saved: no fingerprint taken (nor warnings)
    np.testing.assert_array_equal(new.arrays["v"], fresh.arrays["v"])
    assert not np.array_equal(new.arrays["v"], old.arrays["v"]) and new.meta["chunks_loaded"] == 0
    manifest = json.loads((tmp_path / "sweep" / "manifest.json").read_text())
    assert manifest["trial_fn_code"] == code_fingerprint(TRIAL_V2)
    assert_clear_error(montecarlo.sweep, TRIAL_V2, GRID, out_dir=tmp_path, on_mismatch="keep", match="on_mismatch",
                       **ARGS)


def test_chunks_without_manifest_are_refused(tmp_path):
    montecarlo.sweep(TRIAL_V1, GRID, out_dir=tmp_path, key=0, **ARGS)
    (tmp_path / "sweep" / "manifest.json").unlink()
    err = assert_clear_error(montecarlo.sweep, TRIAL_V1, GRID, out_dir=tmp_path, key=7, match="no manifest", **ARGS)
    assert str(tmp_path / "sweep") in str(err)
    assert not (tmp_path / "sweep" / "manifest.json").exists()  # nothing claimed for the old numbers
    assert_clear_error(montecarlo.load_finished, tmp_path, "sweep", match="no manifest")
    with pytest.warns(UserWarning, match="no manifest"):
        new = montecarlo.sweep(TRIAL_V1, GRID, out_dir=tmp_path, key=7, on_mismatch="recompute", **ARGS)
    np.testing.assert_array_equal(new.arrays["v"], montecarlo.sweep(TRIAL_V1, GRID, key=7, **ARGS).arrays["v"])


# --- damaged, replaced and moved files ---------------------------------------------------------------

def _flip(path: Path) -> None:
    data = path.read_bytes()
    i = data.index(b"\x93NUMPY") + 130  # inside the first array's payload (the zip CRC fails)
    path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])


def _forge(path: Path) -> None:
    """Other values of the same shape, saved with the original checksum and seal."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["v"] = arrays["v"] + 1
    np.savez(path, **arrays)


def _truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


NAN = np.full(4, np.nan, np.float32)
# (damage, file it is done to, words expected in the error)
DAMAGE = {
    "nan npz": (lambda p: np.savez(p, v=NAN), "c0", "not a chunk written by this sweep"),
    "checksummed nan": (lambda p: montecarlo.rec.save_arrays(p, {"v": NAN}), "c0", "not a chunk written"),
    "moved chunk": (lambda p: p.write_bytes(p.with_name("static000_chunk00001.npz").read_bytes()), "c0",
                    "not a chunk written"),
    "bit flip": (_flip, "c0", "unreadable sweep chunk"),
    "other values, old checksum": (_forge, "c0", "fails its checksum"),
    "truncated chunk": (_truncate, "c0", "unreadable sweep chunk"),
    "empty chunk": (lambda p: p.write_bytes(b""), "c0", "unreadable sweep chunk"),
    "truncated manifest": (lambda p: _truncate(p, 20), "manifest", "unreadable sweep manifest"),
}


def test_every_damaged_file_raises_corrupt_file_error_naming_it(tmp_path):
    montecarlo.sweep(TRIAL_V1, GRID, out_dir=tmp_path / "clean", **ARGS)
    for label, (damage, which, words) in DAMAGE.items():
        folder = tmp_path / re.sub(r"\W+", "_", label)
        shutil.copytree(tmp_path / "clean", folder)
        path = _chunk(folder, 0) if which == "c0" else folder / "sweep" / "manifest.json"
        damage(path)
        err = assert_clear_error(montecarlo.sweep, TRIAL_V1, GRID, out_dir=folder, match=words, **ARGS)
        assert isinstance(err, CorruptFileError) and err.path == str(path), label
        if which == "c0":
            assert_clear_error(montecarlo.load_finished, folder, "sweep", match=re.escape(str(path)))


def test_load_finished_checks_the_trial_function(tmp_path):
    montecarlo.sweep(TRIAL_V1, GRID, out_dir=tmp_path, **ARGS)
    done = montecarlo.load_finished(tmp_path, "sweep", trial_fn=TRIAL_V1)
    assert done is not None and done["v"].shape == (8,)
    assert_clear_error(montecarlo.load_finished, tmp_path, "sweep", trial_fn=TRIAL_V2, match="other code")


# --- crash safety: SIGKILL at random points, three times, then resume --------------------------------

# The trial function is defined by source shared with the driver process, so that the driver
# imports only jax and jsparse.core.montecarlo (each import of the test module costs seconds).
_CRASH_SRC = """
import jax
CRASH_WEIGHTS = {"b": 2.0, "a": 1.0}
CRASH_TAGS = frozenset({"alpha", "beta", "gamma", "delta"})  # iteration order depends on PYTHONHASHSEED
CRASH_GRID = {"x": [0.0, 1.0, 2.0, 3.0], "mode": ["b"]}  # one static value: one compile
CRASH_ARGS = dict(num_trials=20, chunk_size=1, progress=False)  # 80 chunks: never done before a kill
def crash_trial(key, x, mode):
    w = CRASH_WEIGHTS[mode] * len(CRASH_TAGS)
    return {"v": jax.random.normal(key, (3,)) * w + x}
"""

_DRIVER = "from jsparse.core import montecarlo\n" + _CRASH_SRC + r"""
import json, os, random, signal, sys, time
from pathlib import Path
out, rng = sys.argv[1], random.Random(int(sys.argv[2]))
chunks = Path(out) / "sweep" / "chunks"
def snapshot():
    return {p.name: [p.stat().st_ino, p.stat().st_mtime_ns] for p in sorted(chunks.glob("*.npz"))}
log = []
for run in range(3):
    before = snapshot() if chunks.exists() else {}
    target = len(before) + rng.randint(1, 6)
    pid = os.fork()  # jax is imported but no backend started: each child starts its own
    if pid == 0:
        try:
            montecarlo.sweep(crash_trial, CRASH_GRID, out_dir=out, **CRASH_ARGS)
        finally:
            os._exit(0)
    while not chunks.exists() or len(list(chunks.glob("*.npz"))) < target:
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the sweep ended before it was killed"
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, 0.01))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    after = snapshot()
    assert all(after[k] == v for k, v in before.items()), "a finished chunk was rewritten"
    log.append(after)
print(json.dumps(log))
"""


def test_sigkilled_sweep_resumes_bit_identically_without_recomputing(tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="12345", JSPARSE_PROGRESS="0", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(tmp_path), str(np.random.SeedSequence().entropy % 1000)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    snapshots = json.loads(proc.stdout.strip().splitlines()[-1])
    on_disk = snapshots[-1]
    assert 3 <= len(on_disk) < 80
    crash = {}
    exec(_CRASH_SRC, crash)  # the driver's trial function, here
    trial, grid, args = crash["crash_trial"], crash["CRASH_GRID"], crash["CRASH_ARGS"]
    manifest = json.loads((tmp_path / "sweep" / "manifest.json").read_text())
    assert manifest["trial_fn_code"] == code_fingerprint(trial)  # the same hash in another process and hash seed

    resumed = montecarlo.sweep(trial, grid, out_dir=tmp_path, **args)
    assert resumed.meta["chunks_loaded"] == len(on_disk) and resumed.meta["chunks_computed"] == 80 - len(on_disk)
    chunks = tmp_path / "sweep" / "chunks"
    assert all([(chunks / k).stat().st_ino, (chunks / k).stat().st_mtime_ns] == v for k, v in on_disk.items())
    reference = montecarlo.sweep(trial, grid, **args)
    np.testing.assert_array_equal(resumed.arrays["v"], reference.arrays["v"])
    assert resumed.arrays["v"].dtype == jnp.zeros(()).dtype


# --- the experiments' own caches are keyed by code too ------------------------------------------------

class _Stream:
    features = np.eye(3, dtype=np.float32)

    def batch(self, i):
        return np.full((2, 3), i, np.float32)


def test_experiment_caches_are_keyed_by_code(tmp_path, monkeypatch):
    from experiments.krosbl import run as krosbl_run
    from experiments.sae import run as sae_run
    from experiments.unmixing import run as unmixing_run

    # sae: the run's key changes with the code that trains and scores it
    key = sae_run._fingerprint(_Stream(), method="gba", width=4)
    monkeypatch.setattr(sae_run, "_evaluate", lambda *a: {"edited": True})
    assert sae_run._fingerprint(_Stream(), method="gba", width=4) != key

    # krosbl: a cached convergence curve of other code is recomputed, not returned
    calls = []
    monkeypatch.setattr(krosbl_run.T, "convergence", lambda key, **kw: calls.append(1) or np.zeros(3))
    krosbl_run._convergence(tmp_path, "c", True, k=1)
    monkeypatch.setattr(krosbl_run.T, "convergence", lambda key, **kw: calls.append(2) or np.ones(3))
    np.testing.assert_array_equal(krosbl_run._convergence(tmp_path, "c", True, k=1)["trace"], np.ones(3))
    assert calls == [1, 2]

    # krosbl: the accumulated wall time of a sweep restarts when its chunks were recomputed
    import time
    import types

    def fake_sweep(seconds, loaded):
        def run(*a, **k):
            time.sleep(seconds)
            return types.SimpleNamespace(meta={"chunks_computed": 1, "chunks_loaded": loaded})
        return run

    monkeypatch.setattr(krosbl_run.montecarlo, "sweep", fake_sweep(0.2, 0))
    krosbl_run._sweep(tmp_path, "s", {}, 1, True, chunk=1)
    monkeypatch.setattr(krosbl_run.montecarlo, "sweep", fake_sweep(0.0, 0))  # recomputed: other code
    assert krosbl_run._sweep(tmp_path, "s", {}, 1, True, chunk=1)[1] < 0.1
    monkeypatch.undo()

    # unmixing: cells saved under settings without (or with other) code are refused before any work
    class Reached(Exception):
        pass

    def stop(*a, **k):
        raise Reached

    monkeypatch.setattr(unmixing_run, "build_scenes", stop)
    cells = tmp_path / "unmixing" / "cells"
    montecarlo.rec.write_json(cells / "settings.json", unmixing_run.settings(True))  # as written before
    assert_clear_error(unmixing_run._run, tmp_path / "unmixing", True, True, None, match="other settings or code")
    (cells / "settings.json").unlink()
    with pytest.raises(Reached):  # written now; the same code and settings are accepted again
        unmixing_run._run(tmp_path / "unmixing", True, True, None)
    with pytest.raises(Reached):
        unmixing_run._run(tmp_path / "unmixing", True, True, None)
