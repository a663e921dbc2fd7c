"""Builds divrec's API reference from the docstrings with pdoc (`make docs`).

    python docs/build_api.py --out build/docs/api

Google-style docstrings, one HTML page per module, a search index. The build fails (exit 1)
when a module cannot be imported or an expected page is missing; modules whose optional
library is not installed here (the adapters' LensKit / RecTools) are left out with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import pkgutil
import sys
import warnings
from pathlib import Path

#: modules that need a library outside the environment `make test` builds → that library
OPTIONAL = {"divrec.adapters.lenskit": "lenskit", "divrec.adapters.rectools": "rectools"}

#: pages that must exist after a build
EXPECTED = (
    "divrec.html",
    "divrec/rerank.html",
    "divrec/metrics.html",
    "divrec/pipeline.html",
    "divrec/pipeline/frames.html",
    "divrec/adapters.html",
    "divrec/serve.html",
)


def build(out: Path) -> list[str]:
    """Renders the reference into `out`; returns the problems found (empty: success)."""
    import pdoc
    import pdoc.render

    import divrec

    pdoc.render.configure(docformat="google", show_source=False, search=True)
    problems: list[str] = []
    # every public module by name: pdoc follows a package's `__all__`, which lists names,
    # not submodules
    modules = ["divrec"]
    for info in pkgutil.walk_packages(
        divrec.__path__, "divrec.", onerror=lambda name: problems.append(f"cannot import {name}")
    ):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        library = OPTIONAL.get(info.name)
        if library is not None and importlib.util.find_spec(library) is None:
            print(f"docs: {info.name} left out ({library} is not installed here)")
            continue
        modules.append(info.name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules, output_directory=out)
    problems += [
        str(w.message).splitlines()[0]
        for w in caught
        if "Error importing" in str(w.message) or "Error loading" in str(w.message)
    ]
    problems += [f"missing page {page}" for page in EXPECTED if not (out / page).is_file()]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/docs/api"))
    args = parser.parse_args(argv)
    problems = build(args.out)
    for problem in problems:
        print(f"docs: error: {problem}", file=sys.stderr)
    if problems:
        return 1
    pages = sum(1 for _ in args.out.rglob("*.html"))
    print(f"docs: {pages} pages in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
