"""The `jsparse` command: help exits 0 with the commands listed; `experiments` works from a checkout."""
import pathlib

import pytest

from jsparse import cli

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


def _status(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse's --help
        return int(exit_.code or 0)


@pytest.mark.parametrize("argv", [["--help"], ["sae", "--help"], ["sae", "-h"]])
def test_help_exits_0_and_lists_the_commands(argv, capsys):
    assert _status(argv) == 0
    out = capsys.readouterr().out
    assert "usage: jsparse" in out and ("harvest" in out or "info" in out)


def test_bare_or_unknown_sae_command_prints_the_help_and_exits_2(capsys):
    assert cli.main(["sae"]) == 2
    assert "harvest" in capsys.readouterr().err
    assert cli.main(["sae", "fit"]) == 2
    assert "unknown command 'fit'" in capsys.readouterr().err


def test_experiments_help_works_from_the_checkout_root(capsys, monkeypatch):
    monkeypatch.chdir(pathlib.Path(__file__).resolve().parent.parent)
    assert cli.main(["experiments"]) == 0  # no names: prints the help
    assert "usage: python -m experiments" in capsys.readouterr().out


def test_experiments_elsewhere_says_where_to_run_it(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_experiments_main", lambda: None)
    assert cli.main(["experiments", "--help"]) == 2
    assert "source checkout" in capsys.readouterr().err


def test_sae_commands_name_the_missing_extra_before_any_work(capsys, monkeypatch, tmp_path):
    import jsparse.sae.lm.bert as bert

    def missing():
        raise ImportError('No module named safetensors; install the lm extra: pip install -e ".[lm]"')

    monkeypatch.setattr(bert, "require_lm", missing)
    for argv in (["sae", "harvest", "--out", str(tmp_path / "h")], ["sae", "train", "--store", str(tmp_path / "s"),
                                                                    "--out", str(tmp_path / "t"), "--width", "8"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert 'pip install -e ".[lm]"' in err and "Traceback" not in err
    assert not (tmp_path / "h").exists() and not (tmp_path / "t").exists()  # nothing started
