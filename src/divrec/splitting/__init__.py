"""Train/validation/test splitting protocols, sampled negatives and sequence examples."""

from divrec.splitting.events import Requests, build_requests, request_rows, requests_query
from divrec.splitting.negatives import sample_negatives
from divrec.splitting.protocols import leave_last_one, ncf_split, random_holdout, temporal_split
from divrec.splitting.pums import PumsSplit, holdout_count, pums_split
from divrec.splitting.sequences import PAD, Sequences, Windows, sliding_windows, user_sequences
from divrec.splitting.split import Split

__all__ = [
    "PAD",
    "PumsSplit",
    "Requests",
    "Sequences",
    "Split",
    "Windows",
    "build_requests",
    "holdout_count",
    "leave_last_one",
    "ncf_split",
    "pums_split",
    "random_holdout",
    "request_rows",
    "requests_query",
    "sample_negatives",
    "sliding_windows",
    "temporal_split",
    "user_sequences",
]
