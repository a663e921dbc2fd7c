"""Split protocols by name (the CLI's `--protocol`, the benchmark's configs)."""

from __future__ import annotations

from divrec.data.datasets import TableSpec, load_dataset
from divrec.data.interactions import DataError, Interactions
from divrec.splitting.protocols import leave_last_one, ncf_split, random_holdout, temporal_split
from divrec.splitting.split import Split

__all__ = ["EVAL_PROTOCOL", "PROTOCOLS", "make_split"]

PROTOCOLS = ("ncf", "leave-last-one", "temporal", "random")
#: the evaluation protocol ("sampled" or "full") that goes with each split protocol
EVAL_PROTOCOL = {"ncf": "sampled", "leave-last-one": "full", "temporal": "full", "random": "full"}


def make_split(
    dataset: str,
    protocol: str,
    home=None,
    seed: int = 0,
    data: Interactions | None = None,
    table: TableSpec | None = None,
) -> Split:
    """The split of `dataset` under `protocol`.

    "ncf" on ML-1M uses the published NCF files (comparable with published tables); on other
    data it samples 99 negatives per held-out item with `seed`. "temporal" is the global
    80:20 split by timestamp (HI Test-RT); on ML-1M without the full `ratings.dat` it uses the
    timestamped users 1–2999.

    Args:
        dataset: a dataset name or a CSV/TSV/Parquet path (`divrec.data.datasets`).
        protocol: one of `PROTOCOLS`.
        home: the data home.
        seed: seeds the sampled negatives ("ncf") and the random hold-out.
        data: the log itself (then `dataset` only names it).
        table: how to read `dataset` when it is a file.

    Raises:
        ValueError: an unknown protocol.
        DataError: a split with no training or no test rows.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if protocol == "ncf" and dataset == "ml-1m" and data is None:
        from divrec.data.ncf import load_ncf_ml1m

        return load_ncf_ml1m(home)[0]
    if data is None:
        data = load_dataset(dataset, home, protocol == "temporal", table)
    if protocol == "ncf":
        split = ncf_split(data, n_negatives=99, seed=seed)
    elif protocol == "leave-last-one":
        split = leave_last_one(data, validation=False)
    elif protocol == "temporal":
        split = temporal_split(data, test_fraction=0.2)
    else:
        split = random_holdout(data, test_fraction=0.2, seed=seed)
    if split.test.nnz == 0:
        raise DataError(
            f"{data.name}: the {protocol} split has no test rows (too few interactions per user "
            "to hold any out)"
        )
    if split.train.nnz == 0:
        raise DataError(f"{data.name}: the {protocol} split has no training rows")
    return split
