"""Sequential candidate generation: YouTube DNN, TR-Youtube and ComiRec-SA / ComiRec-DR.

TotalRecall Sec. 4.2 / App. A.6.2 compares, on the ComiRec protocol
(`divrec.splitting.comirec`), models that map a user's recent item sequence (a pseudo-user)
to one or K interest vectors and retrieve items by inner product:

* ``encoder="mean"`` — YouTube DNN as implemented by Cen et al. (2020): the masked mean of
  the history's item embeddings followed by a dense layer (Covington et al. 2016).
* ``encoder="sa"`` — ComiRec-SA (Cen et al. 2020, Eq. 4-5): a self-attentive extractor
  ``A = softmax(W2 tanh(W1 (H + P)ᵀ))`` over the L positions (`(B, K, L)`, padding masked),
  interests ``V = A H`` (`(B, K, D)`).
* ``encoder="dr"`` — ComiRec-DR (Cen et al. 2020 Sec. 3.2.1; Sabour et al. 2017): capsule
  dynamic routing, ê_kj = W_k e_j, c_kj = softmax_k(b_kj), z_k = Σ_j c_kj ê_kj,
  v_k = squash(z_k) = |z_k|²/(1 + |z_k|²) · z_k/|z_k|, b_kj += v_k · ê_kj, for
  `routing_iters` iterations (3).
  `dr_weights="position"` gives each position j its own W_jk as ComiRec's code does
  (``CapsuleNetwork(bilinear_type=2)``, `(L, K, D, D)` weights); the default "shared" (one
  W_k for every position) is a deviation kept for the existing results. The maps are
  initialized N(0, 1/D) (ComiRec: N(0, 1)).

Training (`fit`): a batch draws `batch_size` training sequences uniformly and a cut k
uniformly in each, ``min_history <= k < len`` (ComiRec's sampler,
`divrec.splitting.comirec.next_n_examples`; ComiRec's data iterator has ``min_history=4``,
the default 1 takes every prefix; `cut_examples`); the history is the L items before k and
the targets the next `next_n` items (TotalRecall's next-n-item prediction; 1 = next-item).
With `patience`, training stops as ComiRec's ``train.py`` does: the validation Recall@50 of
held-out users (``fit(valid=...)`` or `valid_fraction`) is measured every `eval_every`
epochs, training ends after `patience` evaluations without a better one, and the best
weights are kept (`epochs` is then the cap). Multi-interest models train each (pseudo-user,
target) pair on the interest closest to the target (Cen et al. Eq. 8, hard attention). The
score is the inner product (`l2_norm=False`) or the scaled cosine cos/τ (`l2_norm=True`,
TotalRecall Eq. 2). Losses:

* ``"ssm"`` — sampled softmax (TotalRecall Eq. 1; Jean et al. 2015) against `ssm_negatives`
  items drawn per batch from a uniform or popularity background distribution, logQ
  corrected, accidental hits removed;
* ``"u2i"`` — in-batch Uni-InfoNCE u2i (TotalRecall Eq. 3, one half): each pair's softmax over
  the batch's target items, logits − log q(i) with q the training-target marginal;
* ``"bi"`` — Bi-InfoNCE (Eq. 3): u2i plus i2u, each target's softmax over the batch's
  pseudo-users (drawn uniformly, so their logQ is a constant and drops out).
  Other targets of the same pseudo-user are masked as accidental hits in both directions.

Layout: `.encoders` (the torch extractors), `.model` (`SequentialConfig`,
`SequentialRecommender`: config, training, scoring), `.search` (per-interest faiss search,
the merge and the controllable aggregation); the losses are `divrec.nn.losses`. YouTube DNN
(``youtube``: ``encoder="mean"``), TR-Youtube (``tr-youtube``: ``encoder="mean"``,
``loss="bi"``, ``l2_norm=True``), ComiRec-SA (``comirec-sa``: ``encoder="sa"``) and
ComiRec-DR (``comirec-dr``: ``encoder="dr"``) are registry presets of
`SequentialRecommender`.

Serving: faiss inner-product search over the item vectors (normalized for `l2_norm`),
one search per interest, merged by the max over interests (Cen et al. Sec. 3.4:
f(u, i) = max_k e_iᵀ v_k), and optionally the controllable aggregation of Cen et al. Eq. 11
(`diversity_lambda` λ > 0): from the union of the per-interest lists, greedily pick
argmax_i f(u, i) + λ Σ_{j ∈ S} δ(cate(i) ≠ cate(j)).
"""

from divrec.retrieval.sequential.encoders import (
    dynamic_routing,
    last_items,
    self_attentive,
    squash,
)
from divrec.retrieval.sequential.model import (
    SequentialConfig,
    SequentialRecommender,
    cut_examples,
)
from divrec.retrieval.sequential.search import controllable_aggregation, search_interests

__all__ = [
    "SequentialConfig",
    "SequentialRecommender",
    "controllable_aggregation",
    "cut_examples",
    "dynamic_routing",
    "last_items",
    "search_interests",
    "self_attentive",
    "squash",
]
