"""The report of `make mutate` (scripts/mutate.sh): per module, how many mutants the tests
killed, and every survivor with its diff, unless scripts/mutate_equivalent.txt says why it
cannot be killed (an equivalent mutant: it changes no behaviour anyone can observe).

Reads mutmut's own results (mutants/**/*.meta) through mutmut 3.8.1's modules.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

EQUIVALENT = Path(__file__).with_name("mutate_equivalent.txt")


def equivalents() -> dict[str, str]:
    """mutant name -> why it is equivalent (one line each: `name  reason`)."""
    found = {}
    for line in EQUIVALENT.read_text().splitlines() if EQUIVALENT.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, _, why = line.strip().partition(" ")
            found[name] = why.strip()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=0, help="how long the run took")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    justified = equivalents()
    rows, survivors, unexplained = [], [], 0
    for path in sorted(walk_mutatable_files()):
        data = SourceFileMutationData(path=path)
        data.load()
        statuses = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}
        if not statuses:
            continue
        killed = sum(s in ("killed", "timeout", "caught by type check") for s in statuses.values())
        survived = sorted(n for n, s in statuses.items() if s == "survived")
        untested = sum(s == "no tests" for s in statuses.values())
        other = len(statuses) - killed - len(survived) - untested
        equivalent = [n for n in survived if n in justified]
        tested = len(statuses) - untested
        score = (killed + len(equivalent)) / tested if tested else 0.0
        rows.append(f"| `{path}` | {len(statuses)} | {killed} | {len(survived)} "
                    f"({len(equivalent)} equivalent) | {untested} | {other} | {score:.0%} |")
        for name in survived:
            survivors.append((name, path, justified.get(name)))
            unexplained += name not in justified

    today = datetime.date.today().isoformat()
    lines = [
        f"# make mutate, {today}",
        "",
        f"{platform.processor() or platform.machine()}, {args.seconds // 60} min "
        f"{args.seconds % 60} s. Score = (killed + equivalent survivors) / (mutants - no "
        "tests). \"No tests\": no test calls that function in the test process (mutmut "
        "cannot follow a node started as another process; the node tests cover those).",
        "",
        "| module | mutants | killed | survived | no tests | other | score |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"## Survivors ({len(survivors)}, {unexplained} not explained)",
        "",
    ]
    for name, path, why in survivors:
        lines.append(f"### `{name}` ({path})")
        lines.append(f"Equivalent: {why}" if why else "**Not explained: kill it or say why.**")
        lines += ["", "```diff", get_diff_for_mutant(name, path=path).rstrip(), "```", ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(rows) + 7]))
    print(f"report: {args.out} ({len(survivors)} survivors, {unexplained} not explained)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
