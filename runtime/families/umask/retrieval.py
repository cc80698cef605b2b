"""Cold start by retrieval (PROTOCOL v2 B3, U-MASK paper section 7.1.2), numpy only.

A cold-start user has 20 slots of ONE source domain (apps or places) and no history of the other.
The paper fills the gap with the traces of semantically similar users, found by the user
representation h_u. This module holds the torch-free pieces that the benchmark, and later a device,
share:

* `cosine_top_k`: the k most similar rows of a bank to a query (h_u for U-MASK, the raw source
  history for the k-nearest-users baseline);
* `place_kinds` / `place_transfer`: a layout slot is one user's own place (layouts are per user and
  users rarely share a 500 m cell), so another user's places are carried over by kind of place:
  each of their cells spreads its mass over the cold user's cells by the similarity of the cells'
  POI mix (E_pos shares, eq. 15), a softmax over cosines with temperature ``PLACE_TEMPERATURE``;
* `map_places`: applies such a transfer to any (..., HW_from) array.

Decisions (not in the paper, which does not say how places of other users are matched): places are
matched by POI mix, not by cell identity; the retrieved users count equally (a plain mean), and a
query without any source activity (nothing happened in the 20 slots) retrieves nobody: the caller
falls back to every other user (popularity).
"""

from __future__ import annotations

import numpy as np

from umask.runtime.core.errors import InputError

PLACE_TEMPERATURE = 0.1     # softmax temperature over POI-mix cosines (1 = nearly uniform; -> 0 = argmax)
DEFAULT_K = 10              # retrieved users


def unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def cosine_top_k(query: np.ndarray, bank: np.ndarray, k: int = DEFAULT_K,
                 exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, similarities) of the ``k`` bank rows (N, D) most cosine-similar to ``query`` (D,), best first,
    ties to the smaller row; ``exclude`` (N,) bool rows never returned (the user itself). None when the
    query is all zero (nothing to compare)."""
    q = np.asarray(query, np.float64).reshape(-1)
    b = np.asarray(bank, np.float64).reshape(len(bank), -1)
    if b.shape[1] != q.size:
        raise InputError(f"cosine_top_k: query has {q.size} values, bank rows {b.shape[1]}")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if not np.any(q):
        return None
    sim = unit(b) @ unit(q)                                             # (N,)
    ok = np.ones(len(b), bool) if exclude is None else ~np.asarray(exclude, bool)
    rows = np.flatnonzero(ok)
    order = rows[np.lexsort((rows, -sim[rows]))][:k]
    return order, sim[order]


def place_kinds(e_pos: np.ndarray) -> np.ndarray:
    """(H*W, P) unit POI-share vectors of a layout from its E_pos (H, W, P+1) (the last entry, the POI
    count, is dropped); zero rows for empty cells and cells without POIs."""
    e = np.asarray(e_pos, np.float64)
    return unit(e[..., :-1].reshape(-1, e.shape[-1] - 1))


def place_transfer(kinds_from: np.ndarray, kinds_to: np.ndarray, filled_to: np.ndarray,
                   temperature: float = PLACE_TEMPERATURE) -> np.ndarray:
    """(HW_from, HW_to) row-stochastic: how one place of another user maps onto the cold user's filled
    cells (softmax of the POI-mix cosine / ``temperature``; uniform for a place without POIs)."""
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    filled = np.asarray(filled_to, bool).reshape(-1)
    out = np.zeros((len(kinds_from), filled.size))
    if not filled.any():
        return out
    cos = np.asarray(kinds_from, np.float64) @ np.asarray(kinds_to, np.float64)[filled].T   # (HW_from, n_filled)
    z = np.exp((cos - cos.max(axis=1, keepdims=True)) / temperature)
    out[:, filled] = z / z.sum(axis=1, keepdims=True)
    return out


def map_places(x: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """(..., HW_from) values of another user's places -> (..., HW_to) on the cold user's layout."""
    return np.asarray(x, np.float64) @ transfer


__all__ = ["PLACE_TEMPERATURE", "DEFAULT_K", "unit", "cosine_top_k", "place_kinds", "place_transfer", "map_places"]
