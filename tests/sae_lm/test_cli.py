"""CLI on a tiny random BERT checkpoint: harvest (special tokens dropped, resumable no-op re-run,
rows equal to a direct forward pass), train + SAELens export + held-out evaluation."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from jsparse.sae import cli  # noqa: E402
from jsparse.sae.lm import bert, corpus  # noqa: E402
from jsparse.sae.store import ActivationStore  # noqa: E402


def test_harvest_then_train(tiny_bert, tmp_path, capsys, monkeypatch):
    folder, cfg, _ = tiny_bert
    args = ["--model", str(folder), "--layer", "1", "--tokens", "700", "--out", str(tmp_path / "st"),
            "--batch-texts", "4", "--max-length", "24", "--chunk-chars", "120", "--shard-rows", "256"]
    assert cli.harvest_main(args) == 0
    s = ActivationStore(tmp_path / "st", verify=True)
    assert s.num_tokens == 700 and s.d == cfg["hidden_size"] and s.complete and s.layer == 1
    ids = s.ids()
    assert not np.isin(ids[:, 2], [0, 2, 3]).any()  # [PAD], [CLS], [SEP] dropped
    # rows equal a direct forward pass of the same chunks
    tok = bert.load_tokenizer(folder, max_length=24)
    net = bert.load_bert(folder)
    texts = [c for _, c in zip(range(4), corpus.chunks("train", chunk_chars=120))]
    t_ids, mask, _, _ = bert.encode_texts(tok, texts, length=24)
    h = np.asarray(bert.layer_activations(net, jnp.asarray(t_ids), jnp.asarray(mask), layer=1))
    first = ids[:5]
    np.testing.assert_allclose(s.rows(np.arange(5)), h[first[:, 0], first[:, 1]], rtol=1e-5, atol=1e-6)
    def no_model(*a, **k):
        raise AssertionError("a finished store must not load the model")

    monkeypatch.setattr(bert, "load_bert", no_model)
    assert cli.harvest_main(args) == 0  # complete store: a re-run changes nothing, loads nothing
    assert ActivationStore(tmp_path / "st").manifest == s.manifest
    monkeypatch.undo()
    # other settings on the same folder are not mistaken for the finished store: the writer refuses
    assert cli.harvest_main([*args[:3], "2", *args[4:]]) == 2
    assert "settings differ" in capsys.readouterr().err

    ev = ["--model", str(folder), "--layer", "1", "--tokens", "300", "--split", "test", "--out", str(tmp_path / "ev"),
          "--batch-texts", "4", "--max-length", "24", "--chunk-chars", "120"]
    assert cli.harvest_main(ev) == 0
    capsys.readouterr()
    tr = ["--store", str(tmp_path / "st"), "--eval-store", str(tmp_path / "ev"), "--out", str(tmp_path / "run"),
          "--method", "topk", "--k", "4", "--width", "32", "--steps", "20", "--batch-size", "64"]
    assert cli.train_main(tr) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < res["eval_fvu"] < 1.5 and 0 < res["eval_l0"] <= 4
    assert (tmp_path / "run" / "saelens" / "cfg.json").exists()
    assert (tmp_path / "run" / "checkpoint" / "state.npz").exists()
    # GBA in the experiment's LM configuration (quantile bias start, untied, a = 1) from the CLI
    gba = [*tr[:5], str(tmp_path / "gba"), "--method", "gba", "--width", "32", "--steps", "20", "--batch-size", "64",
           "--bias-init", "quantile", "--tied", "no", "--scale-init", "1"]
    assert cli.train_main(gba) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < res["eval_fvu"] < 1.5 and 0 < res["eval_l0"] < 32
    assert (tmp_path / "gba" / "saelens" / "sae_weights.safetensors").exists()


def test_bad_arguments_exit_2(tiny_bert, tmp_path, capsys):
    folder, _, _ = tiny_bert
    assert cli.harvest_main(["--model", str(folder), "--layer", "9", "--out", str(tmp_path / "x")]) == 2
    assert "layer" in capsys.readouterr().err
    assert cli.train_main(["--store", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "manifest.json" in capsys.readouterr().err


def _tiny_store(path, n=240, d=6):
    from jsparse.sae import store as st

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return st.harvest(path, range(4), lambda i: (x[i * n // 4:(i + 1) * n // 4], None), d=d, shard_rows=100,
                      model="m", layer=0, show_progress=False)


def test_cli_errors_are_one_line_and_fresh_starts_over(tmp_path, capsys):
    """`jsparse sae train` through jsparse.cli.main: a damaged checkpoint or other settings print
    `jsparse: error: ...` (no traceback) and exit 2; --fresh removes only the checkpoint; fewer
    steps than the logging interval still report final numbers."""
    from jsparse.cli import main

    _tiny_store(tmp_path / "st")
    run = tmp_path / "run"
    tr = ["sae", "train", "--store", str(tmp_path / "st"), "--out", str(run), "--method", "topk", "--k", "2",
          "--steps", "4", "--batch-size", "16", "--checkpoint-every", "2", "--width", "8"]
    assert main(tr) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["final_fvu"] is not None
    state = run / "checkpoint" / "state.npz"
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])

    def fails(argv, match):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("jsparse: error: ") and match in err and "Traceback" not in err, err

    fails(tr, "state.npz")
    state.write_bytes(good)
    fails([*tr, "--seed", "1"], "different settings: key")  # another seed on the same folder
    fails([*tr, "--eval-store", str(tmp_path / "missing")], "missing")
    fails(["sae", "train", "--store", str(tmp_path / "nope"), "--out", str(run)], "nope")
    (run / "notes.txt").write_text("mine")
    assert main([*tr, "--seed", "1", "--fresh"]) == 0  # starts over with the new seed
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final_fvu"] != first["final_fvu"]
    assert (run / "notes.txt").read_text() == "mine" and (run / "saelens" / "cfg.json").exists()
