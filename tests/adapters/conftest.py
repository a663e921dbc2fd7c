"""The adapter tests need LensKit and RecTools, which pin pandas < 3 (RecTools numpy < 2) and
so live in their own environment: `make test-adapters` (.ci/adapters_check.sh, called by
`make test`) installs them and runs this folder there, where a missing library is an error.
In the main environment, without them, the folder is not collected (rather than skipped)."""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [
    f"test_{name}.py" for name in ("lenskit", "rectools") if importlib.util.find_spec(name) is None
]
