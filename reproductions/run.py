"""One command per reproduction: ``python -m reproductions.run reproductions/<name>.toml``.

The paper reproductions do not fit `divrec experiment run` (one dataset, a named full-ranking
protocol, pipelines tuned on validation): CDM uses request-level candidate sets, PURS a
window protocol with sampled candidates, the graph loop the closed-loop simulator and
TotalRecall Table 2 the ComiRec sequence protocol. Each has a script under `reproductions/`
that is resumable (finished seeds / runs are kept on disk and reused on a re-run); an
experiment file names the script and its arguments::

    [run]
    module = "reproductions.cdm_tables"   # a module with main(argv)
    args = ["--seeds", "0", "1", "2", "3", "4", "--out", "benchmarks/results/cdm_seeds"]
    estimate = "…"                         # measured cost, free text

    [quick]                                 # the smoke variant (``--quick``)
    args = ["--quick", "--out", "benchmarks/results/cdm_quick"]

``--quick`` runs the `[quick]` arguments instead; ``--out DIR`` replaces the file's ``--out``
(a smoke run into a scratch folder leaves the committed results alone); ``--dry-run`` prints
the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import tomllib
from pathlib import Path


def load(path: Path) -> dict:
    """The parsed experiment file; ValueError (one line, naming the key) when malformed."""
    try:
        spec = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: {err}") from None
    run = spec.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("module"), str):
        raise ValueError(f'{path}: [run] needs module = "reproductions.<script>"')
    if not str(run["module"]).startswith("reproductions."):
        raise ValueError(f"{path}: run.module must be a reproductions.* script")
    for table in ("run", "quick"):
        args = spec.get(table, {}).get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{path}: {table}.args must be a list of strings")
    return spec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--quick", action="store_true", help="the [quick] smoke variant")
    ap.add_argument("--out", type=Path, help="write here instead of the file's --out")
    ap.add_argument("--dry-run", action="store_true", help="print the command only")
    ns = ap.parse_args(argv)
    try:
        spec = load(ns.file)
    except ValueError as err:
        print(f"reproductions.run: {err}", file=sys.stderr)
        return 2
    table = "quick" if ns.quick else "run"
    if ns.quick and "quick" not in spec:
        print(f"reproductions.run: {ns.file}: no [quick] table", file=sys.stderr)
        return 2
    args = list(spec[table].get("args", []))
    if ns.out is not None:
        if "--out" not in args or args.index("--out") == len(args) - 1:
            print(f"reproductions.run: {ns.file}: {table}.args has no --out to replace",
                  file=sys.stderr)  # fmt: skip
            return 2
        args[args.index("--out") + 1] = str(ns.out)
    module = spec["run"]["module"]
    print(f"python -m {module} " + " ".join(args), flush=True)
    if ns.dry_run:
        return 0
    t0 = time.perf_counter()
    importlib.import_module(module).main(args)
    print(f"reproductions.run: {ns.file} ({table}) done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
