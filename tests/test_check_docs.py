"""experiments.check_docs: doc numbers against a run's results.json at the doc's printed precision."""
import json

import pytest

from experiments import check_docs as cd
from experiments.check_docs import Cell, Check, Regex

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

DOC = """# Demo

FISTA median NMSE 2.0e-3 at 30 dB, 12.5 % remain.

## Other table

| model | method | acc |
|---|---|---|
| MLP | A | 1.0 |

## Quick run

| model | method | acc | PQI t = 0 -> min -> T | SAD |
|---|---|---|---|---|
| MLP (T = 10) | A | 97.5 | 0.402 -> 0.116 -> 0.120 | **0.0846 ± 0.0098** |
| | B | 96.9 | 0.400 -> 0.050 -> 0.050 | 0.1136 ± 0.0012 |
"""

RESULTS = {"nmse": {"fista": [0.5, 0.00204]}, "remaining": 0.1249,
           "runs": [{"name": "A", "acc": 0.97549, "pqi": [0.4021, 0.1164, 0.1204], "sad": [0.0726, 0.0846, 0.0966]},
                    {"name": "B", "acc": 0.9690, "pqi": [0.3999, 0.0504, 0.0504], "sad": [0.1136]}]}

CELL = Cell(("Quick run",), ("MLP*", "B"), "acc")  # the blank model cell repeats "MLP (T = 10)"
CHECKS = [Check("demo.md", Regex(r"NMSE (\S+) at 30 dB"), "exp", "nmse/fista/1"),
          Check("demo.md", Regex(r"(\S+) % remain"), "exp", "remaining", scale=100),
          Check("demo.md", Cell(("Quick run",), ("MLP*", "A"), "acc"), "exp", "runs/[name=A]/acc", scale=100),
          Check("demo.md", CELL, "exp", "runs/[name=B]/acc", scale=100),
          Check("demo.md", Cell(("Quick run",), ("A",), "PQI t = 0 -> min -> T"), "exp", "runs/0/pqi/*",
                index=1, reduce="min"),
          Check("demo.md", Cell(("Quick run",), ("A",), "PQI t = 0 -> min -> T"), "exp", "runs/0/pqi/-1", index=2),
          Check("demo.md", Cell(("Quick run",), ("A",), "SAD"), "exp", ("runs", "0", "sad"), reduce="mean"),
          Check("demo.md", Cell(("Quick run",), ("A",), "SAD"), "exp", ("runs", "0", "sad"), index=1, reduce="std")]


def _folders(tmp_path, results=RESULTS, quick=True):
    docs, res = tmp_path / "docs", tmp_path / "results"
    docs.mkdir()
    (docs / "demo.md").write_text(DOC)
    (res / "exp").mkdir(parents=True)
    (res / "exp" / "results.json").write_text(json.dumps(results))
    (res / "exp" / "run.json").write_text(json.dumps({"quick": quick}))
    return docs, res


def test_numbers_equal_at_the_printed_precision_pass_and_a_changed_one_fails(tmp_path, capsys):
    docs, res = _folders(tmp_path)
    rows = cd.compare(CHECKS, res, docs)
    assert [r.status for r in rows] == ["ok"] * len(CHECKS)
    assert [r.doc_value for r in rows] == ["2.0e-3", "12.5", "97.5", "96.9", "0.116", "0.120", "0.0846", "0.0098"]
    assert [r.run_value for r in rows][:4] == ["2.0e-3", "12.5", "97.5", "96.9"]
    assert cd.main(["--results", str(res), "--docs", str(docs)], checks=CHECKS) == 0
    assert "8 of 8 compared numbers match" in capsys.readouterr().out

    changed = json.loads(json.dumps(RESULTS))
    changed["runs"][1]["acc"] = 0.9696  # prints as 97.0, the doc says 96.9
    (res / "exp" / "results.json").write_text(json.dumps(changed))
    assert cd.main(["--results", str(res), "--docs", str(docs), "--failures-only"], checks=CHECKS) == 1
    out = capsys.readouterr().out
    assert "| demo.md | exp: runs/[name=B]/acc x 100 | 96.9 | 97.0 | MISMATCH |" in out
    assert out.count("MISMATCH") == 1


def test_missing_entries_and_doc_numbers_are_errors_and_missing_runs_are_not_checked(tmp_path, capsys):
    docs, res = _folders(tmp_path)
    checks = [Check("demo.md", CELL, "exp", "runs/[name=C]/acc"),  # no such entry
              Check("demo.md", Cell(("Quick run",), ("Z",), "acc"), "exp", "remaining"),  # no such row
              Check("demo.md", Regex(r"NMSE (\S+) at 40 dB"), "exp", "remaining"),  # not in the doc
              Check("demo.md", CELL, "absent", "acc")]  # experiment not run
    status = [r.status for r in cd.compare(checks, res, docs)]
    assert status[0].startswith("ERROR: KeyError") and "name = 'C'" in status[0]
    assert status[1].startswith("ERROR: LookupError: 0 rows match")
    assert status[2].startswith("ERROR: LookupError: pattern")
    assert status[3] == "not checked: no results.json"
    assert cd.main(["--results", str(res), "--docs", str(docs)], checks=checks[3:]) == 1  # nothing compared
    (res / "exp" / "run.json").write_text(json.dumps({"quick": False}))
    assert cd.compare(checks[:1], res, docs)[0].status == "not checked: a full-size run"
    (res / "exp" / "run.json").write_text("{")
    assert cd.compare(checks[:1], res, docs)[0].status.startswith("ERROR: ")  # a damaged file, named
    capsys.readouterr()


def test_as_printed_follows_the_docs_notation():
    assert cd.as_printed(2.049e-3, "2.0e-3") == "2.0e-3" and cd.same(2.049e-3, "2.0e-3")
    assert not cd.same(2.051e-3, "2.0e-3")
    assert cd.as_printed(1.2e-4, "1.2e-04") == "1.2e-4" and cd.same(1.2e-4, "1.2e-04")
    assert cd.as_printed(5400.4, "5,400") == "5400" and cd.same(5400.4, "5,400")
    assert cd.same(-12.4, "−12") and cd.same(0.0, "0.0") and not cd.same(0.05, "0.0")
    assert cd.doc_number("ReLU-L1 L0 6.5 FVU 0.735", 1) == "0.735"  # the digits of L1 and L0 are no numbers


def test_every_mapped_doc_number_is_found_in_the_docs(tmp_path):
    rows = cd.compare(cd.CHECKS, tmp_path, cd.build_parser().parse_args([]).docs)
    assert [r for r in rows if not r.status.startswith("not checked")] == []
    assert all(r.doc_value for r in rows)
    assert len({r.doc for r in rows}) == 5  # foundation, unmixing, pruning, sae, sae_lm
