"""`python -m experiments`: help without arguments, SUMMARY.md gathers every experiment present."""
import json

import pytest

from experiments.__main__ import gather_summary, main

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


def test_no_arguments_prints_help_and_exits_0(capsys):
    assert main([]) == 0
    assert "usage: python -m experiments" in capsys.readouterr().out


def test_summary_gathers_every_experiment_present_with_nested_headings(tmp_path):
    for name, quick, secs in (("lasso", True, 7.7), ("unmixing", False, 41.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.md").write_text(f"# {name} results\n\n## table\n\n```\n# not a heading\n```\n")
        (tmp_path / name / "run.json").write_text(json.dumps({"quick": quick, "seconds": secs}))
    text = gather_summary(tmp_path, {"sae": "Traceback ...\nValueError: boom"})
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert [s.split()[1] for s in sections] == ["lasso", "unmixing", "sae"]  # the order of EXPERIMENTS
    assert "### lasso results" in text and "#### table" in text and "\n# not a heading\n" in text
    assert "_quick size, 8 s;" in text and "_full size, 42 s;" in text and "ValueError: boom" in text
    assert "krosbl" not in text  # absent experiments are not listed
