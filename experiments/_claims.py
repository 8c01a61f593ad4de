"""The paragraph every results table opens with: the paper's claim, what this run shows, and what
it does not reproduce (with the command that runs the paper's size)."""
from __future__ import annotations


def claims(paper: str, here: str, missing: str | None = None, command: str | None = None) -> list[str]:
    """Markdown lines: **Paper:** / **This run:** / **Not reproduced here:** (+ full-size command)."""
    lines = [f"**Paper:** {paper}  ", f"**This run:** {here}" + ("  " if missing else "")]
    if missing:
        lines.append(f"**Not reproduced here:** {missing}" + (f" Full size: `{command}`." if command else ""))
    return lines + [""]
