"""TotalRecall two-tower retrieval (bidirectional u2i + i2u candidate generation).

Two ID-embedding towers u = f(u), i = g(i) in R^d scored by the scaled cosine (Eq. 2)

    φ(u, i) = cos(u, i) / τ,

trained with one of

* ``"bi"``: Bi-InfoNCE (Eq. 3) — in-batch softmax over the batch's items for each user
  (u2i) plus over the batch's users for each item (i2u), each logit corrected by the log of
  the empirical marginal of the *negative* (logQ correction: ``φ(u, j) − log q(j)``);
* ``"u2i"`` / ``"i2u"``: Uni-InfoNCE, either half of Eq. 3;
* ``"ssm"``: sampled softmax (Sec. 2.3 Eq. 1, App. A.2 Eq. 9; Jean et al. 2015, Yi et al.
  2019): for each positive (u, i), a softmax over i and ``ssm_negatives`` items drawn per batch
  (shared by the batch's rows) from a background distribution p_n — uniform or the empirical
  item marginal ("popularity") — with every logit corrected by −log p_n (logQ);
* ``"mfb"``: matrix factorization with the Bernoulli likelihood (App. A.2 Eq. 7, BCE on
  σ(φ)) and explicit negative sampling ``"[a:b]"`` (Sec. 3.5): for each positive (u, i),
  ``a`` random users paired with i and ``b`` random items paired with u (so ``[0:8]`` is
  Rendle et al.'s item sampling, modelling p(i|u); ``[8:0]`` models p(u|i); ``[4:4]`` and
  ``[8:8]`` p(u,i)/(p(u)p(i))); ``"[n]"`` draws n (u, i) pairs uniformly from U × I
  (models p(u, i)).

Towers (optional; the default is the paper's pair of ID-embedding tables): ``tower="mlp"``
puts an MLP after the ID embeddings on both sides; ``user_tower="history"`` is a
YouTube-DNN-style user tower (Covington et al. 2016) — an MLP over pooled embeddings of the
user's last training items — that also scores pseudo-users given as item lists
(`TwoTowerRecommender.encode_history`, `TwoTowerRecommender.recommend_history`).

Layout: `divrec.nn.losses` (the losses), `.sampling` (negative sampling), `.towers` (the
torch modules), `.model` (`TwoTowerConfig`, `TwoTowerRecommender`: config, training,
scoring), `.search` (ANN serving and the batch path). MFb is the registry preset ``mfb``
(``loss="mfb"`` with its paper defaults), not a subclass.

Serving: u2i and i2u top-k through faiss (`divrec.retrieval.ann`), and potential users of a
group of items by aggregating per-item scores (App. A.7.2: exp(φ) for InfoNCE models,
σ(φ) for MFb; mean, max or sum). `batch_potential_users` is the large-scale i2u path of
Sec. 3.6: top-k items per user by ANN, then the top-M users of each item from the same (u, i)
scores, in user chunks.
"""

from divrec.nn.losses import (
    corrected_softmax_ce,
    cosine_scores,
    infonce_loss,
    sampled_softmax_loss,
)
from divrec.retrieval.two_tower.model import TwoTowerConfig, TwoTowerRecommender
from divrec.retrieval.two_tower.sampling import (
    SSM_SAMPLING,
    mfb_negatives,
    parse_negatives,
    ssm_sampling_probabilities,
)
from divrec.retrieval.two_tower.search import (
    TwoTowerSearch,
    batch_potential_users,
    merge_top_users,
)
from divrec.retrieval.two_tower.towers import build_histories

__all__ = [
    "SSM_SAMPLING",
    "TwoTowerConfig",
    "TwoTowerRecommender",
    "TwoTowerSearch",
    "batch_potential_users",
    "build_histories",
    "corrected_softmax_ce",
    "cosine_scores",
    "infonce_loss",
    "merge_top_users",
    "mfb_negatives",
    "parse_negatives",
    "sampled_softmax_loss",
    "ssm_sampling_probabilities",
]
