"""Train/validation/test splitting protocols, sampled negatives and sequence examples."""

from divrec.splitting.negatives import sample_negatives
from divrec.splitting.protocols import leave_last_one, ncf_split, random_holdout, temporal_split
from divrec.splitting.sequences import PAD, Sequences, Windows, sliding_windows, user_sequences
from divrec.splitting.split import Split

__all__ = [
    "PAD",
    "Sequences",
    "Split",
    "Windows",
    "leave_last_one",
    "ncf_split",
    "random_holdout",
    "sample_negatives",
    "sliding_windows",
    "temporal_split",
    "user_sequences",
]
