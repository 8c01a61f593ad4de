"""Every command-line option says what it does and what its default is, and every `--help` exits 0.

The walk covers the `jsparse` command, its `sae harvest` / `sae train` commands, `python -m
experiments`, the stand-alone entry points of the reproductions, the benchmarks and
`python -m jsparse.unmixing.data`."""
import argparse
import importlib
import os

import jax
import pytest

from jsparse import cli
from jsparse.cli import HelpFormatter
from jsparse.sae import cli as sae_cli

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

EXPERIMENT_PARSERS = ("experiments.__main__", "experiments.krosbl.run", "experiments.krosbl.prune_study",
                      "experiments.irs.run", "experiments.irs.tail_study", "experiments.pruning.run",
                      "experiments.unmixing.run", "experiments.unmixing.suite",
                      "experiments.pruning.probe", "experiments.lasso.run", "experiments.sae.run",
                      "experiments.sae.ablate", "experiments.sae.toy", "experiments.sae_lm.run",
                      "experiments.bench_irs", "experiments.bench_pruning", "experiments.bench_sbl",
                      "experiments.bench_scaling", "experiments.bench_store", "experiments.bench_unmixing",
                      "experiments.check_docs", "jsparse.unmixing.data.__main__")


def _parsers():
    """(name, parser) for every parser and sub-parser, the experiments' imported without changing
    this process's environment or 64-bit mode (experiments.krosbl.run adds an XLA flag at import;
    bench_sbl also sets OPENBLAS_NUM_THREADS, and it and bench_irs switch on jax_enable_x64)."""
    environ, x64 = dict(os.environ), jax.config.read("jax_enable_x64")
    try:
        modules = [importlib.import_module(name) for name in EXPERIMENT_PARSERS]
    finally:
        os.environ.clear()
        os.environ.update(environ)
        jax.config.update("jax_enable_x64", x64)
    todo = [("jsparse", cli.build_parser()), ("jsparse sae harvest", sae_cli._harvest_parser()),
            ("jsparse sae train", sae_cli._train_parser())]
    todo += [(m.__name__, m.build_parser()) for m in modules]
    out = []
    while todo:
        name, parser = todo.pop()
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return out


def _problems(name: str, parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    if not issubclass(parser.formatter_class, (HelpFormatter, argparse.ArgumentDefaultsHelpFormatter)):
        problems.append(f"{name}: formatter_class {parser.formatter_class.__name__} does not show defaults")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = f"{name} {'/'.join(action.option_strings) or action.dest}"
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"{label}: no help text")
            continue
        positional = not action.option_strings
        if action.required or positional or isinstance(action, argparse._SubParsersAction):
            continue
        text = parser._get_formatter()._expand_help(action)
        if "default" not in text.lower():
            problems.append(f"{label}: help does not show the default")
        if "default: None" in text:
            problems.append(f"{label}: help shows 'default: None'; say what no value means")
    return problems


def test_every_option_has_help_text_and_shows_its_default():
    parsers = _parsers()
    assert len(parsers) >= 28  # jsparse, its sub-commands, sae harvest/train, and 22 experiment entry points
    problems = [p for name, parser in parsers for p in _problems(name, parser)]
    assert problems == []
    for _, parser in parsers:
        assert parser.format_help()  # every %-placeholder in the help texts expands


@pytest.mark.parametrize("argv", [["info", "--help"], ["sae", "harvest", "--help"],
                                  ["sae", "train", "--help"], ["experiments", "--help"]])
def test_help_of_every_command_exits_0_and_lists_defaults(argv, capsys, monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/ importable
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    if argv[0] != "info":
        assert "(default: " in out
