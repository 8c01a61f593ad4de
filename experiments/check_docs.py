"""Check that the quick-run numbers quoted in docs/ are the numbers a quick run produces.

    python -m experiments all --quick --out results        # README command (a)
    python -m experiments.check_docs --results results      # compare docs/*.md with results/*/results.json

Each check names a doc, where the number stands in it (a regular expression, or a Markdown table
cell: the table under a heading, a row, a column) and the results.json entry it quotes. The run's
value is rounded the way the doc prints it (the same number of decimals, in the same notation)
and must equal the doc's value. Prints a table (doc, quantity, doc value, run value, status) and
exits 1 when a number differs, a doc number cannot be found or a results entry is missing.
Experiments without results in the folder (or with a full-size run) are listed as not checked;
when nothing at all was compared the exit status is 1 too.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jsparse.core.records import read_json

# A number as the docs print it: 12, -0.5, 2.0e-3, 5,400 (not the digits inside words such as L0).
NUMBER = re.compile(r"(?<![\w.])[-−+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+−]?\d+)?(?![\w])")


class Regex(NamedTuple):
    """The text of group 1 of `pattern`, which must match exactly once in the doc."""
    pattern: str

    def text(self, doc: str) -> str:
        found = list(re.finditer(self.pattern, doc, flags=re.S))
        if len(found) != 1:
            raise LookupError(f"pattern {self.pattern!r} matches {len(found)} times")
        return found[0].group(1)


class Cell(NamedTuple):
    """A cell of a Markdown table: the first table under the heading found by `headings` (the first
    heading line containing the first string, then the first one after it containing the second,
    ...), in the one row that has a cell equal to each string of `row` ('X*': a cell starting with
    X; an empty cell repeats the one above it), and the column headed `column`."""
    headings: tuple[str, ...]
    row: tuple[str, ...]
    column: str

    def text(self, doc: str) -> str:
        header, rows = _table_under(doc, self.headings)
        if self.column not in header:
            raise LookupError(f"no column {self.column!r} under {self.headings[-1]!r}")
        hits = [r for r in rows if all(any(_cell_is(c, want) for c in r) for want in self.row)]
        if len(hits) != 1:
            raise LookupError(f"{len(hits)} rows match {self.row!r} under {self.headings[-1]!r}")
        return hits[0][header.index(self.column)]


def _cell_is(cell: str, want: str) -> bool:
    return cell.startswith(want[:-1]) if want.endswith("*") else cell == want


def _cells(line: str) -> list[str]:
    return [c.strip().replace("**", "").strip() for c in line.strip().strip("|").split("|")]


def _table_under(doc: str, headings: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    lines, start = doc.splitlines(), -1
    for heading in headings:
        start = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#") and heading in lines[i]),
                     None)
        if start is None:
            raise LookupError(f"no heading containing {heading!r} (after {headings[:headings.index(heading)]})")
    i = next((j for j in range(start + 1, len(lines)) if lines[j].lstrip().startswith("|")), None)
    if i is None:
        raise LookupError(f"no table under {headings[-1]!r}")
    header, rows, previous = _cells(lines[i]), [], None
    for line in lines[i + 2:]:
        if not line.lstrip().startswith("|"):
            break
        row = _cells(line)
        if previous is not None:
            row = [c if c or k >= len(previous) else previous[k] for k, c in enumerate(row)]
        rows.append(row)
        previous = row
    return header, rows


class Check(NamedTuple):
    """One doc number: the `index`-th number of the located text equals results.json entry `key`
    of `experiment` (path segments split by '/', or a tuple of them: a dict key, a list index,
    `[field=value]` for the list element whose field is value, `*` for every element), reduced by
    `reduce` ('mean', 'std' or 'min' of a list) and multiplied by `scale`."""
    doc: str
    where: Regex | Cell
    experiment: str
    key: str | tuple[str, ...]
    index: int = 0
    reduce: str = ""
    scale: float = 1.0

    @property
    def quantity(self) -> str:
        key = self.key if isinstance(self.key, str) else "/".join(self.key)
        text = f"{self.experiment}: {key}" + (f" ({self.reduce})" if self.reduce else "")
        return text + (f" x {self.scale:g}" if self.scale != 1 else "")


def lookup(data: Any, key: str | tuple[str, ...]) -> Any:
    """The entry of `data` at path `key` (see `Check`); KeyError naming the segment when absent."""
    parts = tuple(key.split("/")) if isinstance(key, str) else key
    for n, part in enumerate(parts):
        if part == "*":
            return [lookup(item, parts[n + 1:]) if n + 1 < len(parts) else item for item in data]
        select = re.fullmatch(r"\[(\w+)=(.*)\]", part)
        if select:
            field, value = select.groups()
            hits = [item for item in data if str(item.get(field)) == value]
            if len(hits) != 1:
                raise KeyError(f"{len(hits)} entries with {field} = {value!r}")
            data = hits[0]
        elif isinstance(data, list):
            data = data[int(part)]
        elif part in data:
            data = data[part]
        else:
            raise KeyError(part)
    return data


def run_value(results: Any, check: Check) -> float:
    value = lookup(results, check.key)
    if check.reduce:
        values = [float(v) for v in value]
        mean = sum(values) / len(values)
        value = {"mean": mean, "min": min(values),
                 "std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))}[check.reduce]
    return float(value) * check.scale


def doc_number(text: str, index: int) -> str:
    numbers = NUMBER.findall(text)
    if index >= len(numbers):
        raise LookupError(f"{text!r} holds {len(numbers)} numbers, not {index + 1}")
    return numbers[index]


def _float(text: str) -> float:
    return float(text.replace("−", "-").replace(",", ""))


def as_printed(value: float, doc_text: str) -> str:
    """`value` printed like `doc_text`: the same notation and number of decimals."""
    plain = doc_text.replace("−", "-").replace(",", "")
    mantissa, _, exponent = plain.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    if exponent:
        m, _, e = f"{value:.{decimals}e}".partition("e")
        return f"{m}e{int(e)}"
    return f"{value:.{decimals}f}"


def same(value: float, doc_text: str) -> bool:
    return _float(as_printed(value, doc_text)) == _float(doc_text)


# ---- The mapping: which doc number is which results.json entry (quick runs of README command (a)).

def _lasso() -> list[Check]:
    doc = "foundation.md"
    return [Check(doc, Regex(r"FISTA median NMSE (\S+) at 30 dB"), "lasso", "median_nmse/fista/3"),
            Check(doc, Regex(r"at 30 dB vs oracle (\S+) \|"), "lasso", "median_nmse/oracle/3")]


def _unmixing() -> list[Check]:
    scenes = {"synthetic 20 dB": "synthetic SNR 20 dB", "synthetic 40 dB": "synthetic SNR 40 dB",
              "Samson": "samson", "Jasper": "jasper"}
    methods = ("VCA-FCLS", "NMF", "L1/2-NMF", "l21-NMF", "RRLbS", "RRLbS-R2")
    return [Check("unmixing.md", Cell(("Quick run (3 seeds",), (row,), m), "unmixing",
                  ("cells", f"{scene} | {m}", "sad"), index=i, reduce=stat)
            for row, scene in scenes.items() for m in methods for i, stat in enumerate(("mean", "std"))]


def _pruning() -> list[Check]:
    doc, heading = "pruning.md", "Quick experiment: digits"
    out = []
    for model, label in (("mlp", "MLP"), ("cnn", "CNN")):
        for method in ("SAP(0.5,1)", "SAP(1,2)", "LT", "OS"):
            run = f"runs/{model}/{method}"
            cell = lambda column: Cell((heading,), (label + "*", method), column)  # noqa: E731
            out += [Check(doc, cell("dense acc"), "pruning", f"{run}/0/test_acc", scale=100),
                    Check(doc, cell("% remaining at T"), "pruning", f"{run}/-1/remaining", scale=100),
                    Check(doc, cell("acc at T"), "pruning", f"{run}/-1/test_acc", scale=100),
                    Check(doc, cell("PQI t = 0 → min → T"), "pruning", f"{run}/0/pqi"),
                    Check(doc, cell("PQI t = 0 → min → T"), "pruning", f"{run}/*/pqi", index=1, reduce="min"),
                    Check(doc, cell("PQI t = 0 → min → T"), "pruning", f"{run}/-1/pqi", index=2)]
            out += [Check(doc, cell("% remaining t = 1..5"), "pruning", f"{run}/{t}/remaining", index=t - 1, scale=100)
                    for t in range(1, 6)]
    sap = "sap_claims/mlp"
    out += [Check(doc, Regex(r"\*\*PQ Index trajectory:\*\* ([\d.,\s]+)\."), "pruning",
                  f"runs/mlp/SAP(0.5,1)/{t}/pqi", index=t) for t in range(11)]
    out += [Check(doc, Regex(r"not reached — (\S+) % remain at t = 10"), "pruning", f"{sap}/remaining_at_t10",
                  scale=100),
            Check(doc, Regex(r"\(max drop (\S+) points"), "pruning", f"{sap}/max_acc_drop_points_t_le_10"),
            Check(doc, Regex(r"\((\d+) rounds differ\)"), "pruning", f"{sap}/rounds_with_count_mismatch"),
            Check(doc, Regex(r"by at most (\S+),\s+the 1/d rounding"), "pruning",
                  f"{sap}/pruned_fraction_minus_pqi_max_abs")]
    return out


def _sae() -> list[Check]:
    doc, quick = "sae.md", "Quick size"
    recovery = (("FRR@0.8", "frr08", 100), ("FRR@0.9", "frr09", 100), ("FRR@0.9 Hungarian", "frr09_hungarian", 100),
                ("FVU", "fvu", 1), ("L0", "l0", 1), ("dead %", "dead", 100))
    runs = ("light_gba", "light_topk_k9", "light_ba", "light_batchtopk_k9", "light_topk_k3", "light_relu_l1",
            "light_jumprelu", "heavy_gba", "heavy_topk_k28", "heavy_ba")
    out = [Check(doc, Cell((quick, "Recovery (TopK/BatchTopK"), (run,), col), "sae", f"recovery/[run={run}]/{key}",
                 scale=s) for run in runs for col, key, s in recovery]
    toy = (("FRR@0.8 ours", "frr08", 100), ("FRR@0.9 ours", "frr09", 100), ("L0", "l0", 1), ("dead %", "dead", 100))
    out += [Check(doc, Cell((quick, "Imbalanced toy"), (m,), col), "sae", f"imbalanced_toy/[method={m}]/{key}", scale=s)
            for m in ("gba", "ba", "topk k=20") for col, key, s in toy]
    hetero = (("L0", "l0", 1), ("dead %", "dead", 100), ("FRR@0.9 all", "frr09", 100),
              ("rarest quarter FRR@0.8", "rare_frr08", 100), ("rarest quarter FRR@0.9", "rare_frr09", 100),
              ("rarest quarter mean max-cos", "rare_mean_cos", 1),
              ("most frequent quarter FRR@0.9", "frequent_frr09", 100))
    out += [Check(doc, Cell((quick, "Heterogeneous frequencies"), (run,), col), "sae",
                  f"heterogeneous/[run={run}]/{key}", scale=s)
            for run in ("hetero_gba", "hetero_ba", "hetero_topk_k9", "hetero_topk_k3") for col, key, s in hetero]
    out += [Check(doc, Cell((quick, "Resonance (BA"), (f,), p), "sae", f"resonance/0/frr09/{i}/{j}", scale=100)
            for i, f in enumerate(("0.0156", "0.0469", "0.125")) for j, p in enumerate(("0.005", "0.03", "0.2"))]
    return out


def _sae_lm() -> list[Check]:
    out = []
    for method, label in (("topk", "TopK"), ("batchtopk", "BatchTopK"), ("jumprelu", "JumpReLU"), ("gba", "GBA"),
                          ("ba", "BA"), ("relu_l1", "ReLU-L1")):
        where = Regex(rf"(?<![\w-]){re.escape(label)} (L0 \S+ FVU [\d.]+)")
        out += [Check("sae_lm.md", where, "sae_lm", f"results/[method={method}]/l0"),
                Check("sae_lm.md", where, "sae_lm", f"results/[method={method}]/fvu", index=1)]
    return out + [Check("sae_lm.md", Regex(r"GBA's dead\s+fraction \((\S+) %\)"), "sae_lm",
                        "results/[method=gba]/dead_fraction", scale=100)]


# The docs quote no quick-run numbers of krosbl and irs (their tables are full-size runs).
CHECKS: list[Check] = _lasso() + _unmixing() + _pruning() + _sae() + _sae_lm()


class Row(NamedTuple):
    doc: str
    quantity: str
    doc_value: str
    run_value: str
    status: str  # "ok", "MISMATCH", "ERROR: ...", or "not checked: ..."


def _results(results_dir: Path, experiment: str) -> tuple[Any, str]:
    """(results.json of `experiment`, '') or (None, why it is not checked)."""
    folder = results_dir / experiment
    if not (folder / "results.json").is_file():
        return None, "not checked: no results.json"
    info = folder / "run.json"
    if info.is_file() and not read_json(info).get("quick", True):
        return None, "not checked: a full-size run"
    data = read_json(folder / "results.json")
    if data.get("skipped"):
        return None, "not checked: the run was skipped"
    return data, ""


def compare(checks: Sequence[Check], results_dir: Path, docs_dir: Path) -> list[Row]:
    """One Row per check."""
    rows, loaded, docs = [], {}, {}
    for c in checks:
        if c.experiment not in loaded:
            try:
                loaded[c.experiment] = _results(results_dir, c.experiment)
            except ValueError as err:  # jsparse.CorruptFileError: a results file that cannot be read
                loaded[c.experiment] = None, f"ERROR: {err}"
        if c.doc not in docs:
            docs[c.doc] = (docs_dir / c.doc).read_text()
        data, why = loaded[c.experiment]
        doc_text = value_text = ""
        try:
            doc_text = doc_number(c.where.text(docs[c.doc]), c.index)
            if data is None:
                rows.append(Row(c.doc, c.quantity, doc_text, "", why))
                continue
            value = run_value(data, c)
            value_text = as_printed(value, doc_text)
            status = "ok" if same(value, doc_text) else "MISMATCH"
        except (LookupError, ValueError, TypeError, AttributeError) as err:  # KeyError, IndexError: LookupError
            status = f"ERROR: {type(err).__name__}: {err}"
        rows.append(Row(c.doc, c.quantity, doc_text, value_text, status))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    lines = ["| doc | quantity | doc value | run value | status |", "|---|---|---|---|---|"]
    lines += [f"| {r.doc} | {r.quantity} | {r.doc_value} | {r.run_value} | {r.status} |" for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m experiments.check_docs", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="the --out folder of a quick run (holds <experiment>/results.json)")
    p.add_argument("--docs", type=Path, default=Path(__file__).resolve().parent.parent / "docs",
                   help="the docs folder (default: docs/ of this checkout)")
    p.add_argument("--failures-only", action="store_true",
                   help="print only the rows that are not ok (default: every row)")
    return p


def main(argv: list[str] | None = None, checks: Sequence[Check] = CHECKS) -> int:
    a = build_parser().parse_args(argv)
    rows = compare(checks, a.results, a.docs)
    bad = [r for r in rows if r.status == "MISMATCH" or r.status.startswith("ERROR")]
    compared = [r for r in rows if not r.status.startswith("not checked")]
    print(format_table(bad if a.failures_only else rows))
    print(f"\n{len(compared) - len(bad)} of {len(compared)} compared numbers match; "
          f"{len(rows) - len(compared)} not checked; {len(bad)} mismatches or errors.")
    if not compared:
        print(f"Nothing compared: no quick-run results.json under {a.results}.", file=sys.stderr)
    return 1 if bad or not compared else 0


if __name__ == "__main__":
    sys.exit(main())
