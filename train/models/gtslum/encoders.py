"""GTS-LUM input encoders that are fitted once, before the networks train (numpy / sklearn / torch).

* `semantic_ids`: **semantic IDs** (paper: "spectral tokenization"). Behavior descriptions are
  embedded by the shipped Sentence-BERT (all-MiniLM-L6-v2; the paper uses BGE-M3, not shipped here),
  then clustered by a spectral clustering **tree**: the behaviors are split into ``branch`` clusters,
  each cluster again, ``depth`` levels deep; the path of cluster indices is the ID. The paper does not
  say how leaves that hold several behaviors are told apart; we append the behavior's rank inside its
  leaf as a last level (as in TIGER-style semantic IDs), so every behavior has a unique ID.
* `node2vec`: **graph embedding** of the app-place graph (paper: Node2Vec over behavior graphs).
  Nodes are the K app categories and the P + 1 place types; an edge weighs how often an app category
  is used at a place type in the training period. Second-order biased walks (return p, in-out q) and
  skip-gram with negative sampling, the node2vec recipe at a scale of 35 nodes.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Semantic IDs: Sentence-BERT + spectral clustering tree
# ------------------------------------------------------------------------------------------------
def embed_texts(texts: list[str]) -> np.ndarray:
    """(N, 384) L2-normalized Sentence-BERT embeddings of ``texts`` (the shipped all-MiniLM-L6-v2)."""
    from umask.train.models.umask.profile_encoder import SentenceEncoder

    return np.asarray(SentenceEncoder().encode(texts), np.float32)


def _spectral_split(emb: np.ndarray, branch: int, seed: int) -> np.ndarray:
    """Cluster labels 0..branch-1 of the rows of ``emb`` (cosine affinity, spectral clustering)."""
    n = len(emb)
    if n <= branch:
        return np.arange(n)
    from sklearn.cluster import SpectralClustering

    aff = np.clip(emb @ emb.T, 0.0, None)          # cosine similarity of normalized vectors, >= 0
    aff = aff + 1e-6                                 # keep the graph connected
    sc = SpectralClustering(n_clusters=branch, affinity="precomputed", random_state=seed, assign_labels="discretize")
    return sc.fit_predict(aff).astype(np.int64)


def semantic_ids(emb: np.ndarray, *, branch: int = 4, depth: int = 2, seed: int = 0) -> np.ndarray:
    """(N, depth + 1) semantic ID of every row: the spectral tree path, then the rank inside the leaf."""
    n = len(emb)
    ids = np.zeros((n, depth + 1), np.int64)

    def split(rows: np.ndarray, level: int) -> None:
        if level == depth:
            ids[rows, depth] = np.arange(len(rows))       # disambiguation level (see the module docstring)
            return
        labels = _spectral_split(emb[rows], branch, seed + level)
        for c in range(branch):
            sub = rows[labels == c]
            ids[sub, level] = c
            if len(sub):
                split(sub, level + 1)

    split(np.arange(n), 0)
    return ids


# ------------------------------------------------------------------------------------------------
# node2vec on the app-place graph
# ------------------------------------------------------------------------------------------------
def app_place_graph(category: np.ndarray, place: np.ndarray, n_categories: int, n_places: int) -> np.ndarray:
    """(K + P + 1, K + P + 1) symmetric edge weights log1p(count) between categories and place types."""
    n = n_categories + n_places + 1
    w = np.zeros((n, n), np.float64)
    np.add.at(w, (category, n_categories + place), 1.0)
    w = np.log1p(w + w.T)
    return w


def _walks(w: np.ndarray, n_walks: int, length: int, p: float, q: float, rng: np.random.Generator) -> list[list[int]]:
    """node2vec second-order walks: from t -> v, the next node x is weighted w(v, x) / p if x == t,
    w(v, x) if x is a neighbor of t, w(v, x) / q otherwise."""
    n = len(w)
    walks = []
    for _ in range(n_walks):
        for start in rng.permutation(n):
            if w[start].sum() <= 0:
                continue
            walk = [int(start), int(rng.choice(n, p=w[start] / w[start].sum()))]
            while len(walk) < length:
                t, v = walk[-2], walk[-1]
                bias = np.where(np.arange(n) == t, 1.0 / p, np.where(w[t] > 0, 1.0, 1.0 / q))
                pr = w[v] * bias
                walk.append(int(rng.choice(n, p=pr / pr.sum())))
            walks.append(walk)
    return walks


def node2vec(w: np.ndarray, *, dim: int = 16, n_walks: int = 20, length: int = 12, window: int = 3, p: float = 1.0,
             q: float = 0.5, negatives: int = 4, epochs: int = 3, lr: float = 0.05, seed: int = 0) -> np.ndarray:
    """(n, dim) node embeddings: biased walks + skip-gram with negative sampling (numpy SGD)."""
    rng = np.random.default_rng(seed)
    n = len(w)
    walks = _walks(w, n_walks, length, p, q, rng)
    pairs = np.array([(a[i], a[j]) for a in walks for i in range(len(a))
                      for j in range(max(0, i - window), min(len(a), i + window + 1)) if i != j], np.int64)
    emb = rng.normal(0, 0.1, (n, dim))
    ctx = np.zeros((n, dim))
    for _ in range(epochs):
        for c, o in pairs[rng.permutation(len(pairs))]:
            negs = rng.integers(0, n, negatives)
            targets = np.concatenate([[o], negs])
            labels = np.zeros(len(targets))
            labels[0] = 1.0
            s = 1.0 / (1.0 + np.exp(-(ctx[targets] @ emb[c])))
            g = (s - labels)[:, None]                        # d loss / d score of sigmoid cross-entropy
            grad_e = (g * ctx[targets]).sum(0)
            np.add.at(ctx, targets, -lr * g * emb[c])
            emb[c] -= lr * grad_e
    emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8)
    return emb.astype(np.float32)


__all__ = ["embed_texts", "semantic_ids", "app_place_graph", "node2vec"]
