"""PROTOCOL v2 C data for FatsMB and its baselines: Taobao interactions -> per-user sequences + LOO targets.

:func:`load_protocol_c` reads the Taobao sample through `umask.train.data.taobao` (the Tianchi CSV
with categories, or the ``retail.txt`` layout without them), splits it with
`umask.train.data.splits.leave_one_out` (last interaction per user = test, the one before =
validation, both chronological) and renumbers items densely over ALL rows, so that the full
ranking covers every item of the data set (55,233 in the shipped sample), including items seen only
in validation or test.

Per user u with time-ordered rows r_1 .. r_n:
- train sequence: r_1 .. r_{n-2}  (what every model is fitted on),
- validation query: prefix r_1 .. r_{n-2}, target item / behavior of r_{n-1},
- test query: prefix r_1 .. r_{n-1}, target of r_n (the validation row joins the prefix, as usual
  for leave-one-out; no model sees a test target).

A ``*.mobile_mb.tsv[.gz]`` file (`umask.train.data.mobile_mb`: app-usage interactions, items = app
categories, behaviors open / long / heavy) loads the same way (protocol C-mobile): the same split,
items numbered over the file's vocabulary (all catalog categories, also those never used), no
category level (the items are categories), ``data`` real or synthetic as the file says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from umask.runtime.core.errors import DataFormatError
from umask.train.data import mobile_mb
from umask.train.data.grids import REPO_ROOT
from umask.train.data.splits import leave_one_out
from umask.train.data.taobao import BEHAVIORS, UNKNOWN_CATEGORY, read_retail, read_user_behavior

log = logging.getLogger(__name__)
TAOBAO_SAMPLE = REPO_ROOT / "data" / "taobao_user_behavior" / "UserBehavior_head.csv.gz"


@dataclass
class Queries:
    """Held-out interactions: prefix sequences and their targets (one per user)."""

    prefixes: list[tuple[np.ndarray, np.ndarray]]   # (items, behaviors), oldest first
    item: np.ndarray                                # (U,) dense item id of the target
    behavior: np.ndarray                            # (U,) behavior code of the target
    category: np.ndarray                            # (U,) dense category id of the target (-1 unknown)

    def __len__(self) -> int:
        return len(self.prefixes)


@dataclass
class ProtocolC:
    """Everything a protocol-C run needs. ``item_ids[j]`` is the raw id of dense item j;
    ``item_category[j]`` its dense category (-1 when the file has no categories)."""

    path: str
    train: list[tuple[np.ndarray, np.ndarray]]
    val: Queries
    test: Queries
    n_items: int
    n_behaviors: int
    n_categories: int
    item_ids: np.ndarray
    item_category: np.ndarray
    users: np.ndarray
    category_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # dense category -> raw id
    behaviors: tuple[str, ...] = BEHAVIORS
    kind: str = "taobao"            # taobao | mobile (protocol C-mobile, `umask.train.data.mobile_mb`)
    data: str = "real"              # real | synthetic (as the file says)
    source: str = ""                # where the rows came from (the mobile file's metadata)
    item_kind: str = "item"         # mobile: what an item is, "category" (app category) or "place" (base station)
    val_metric: str = "recall@10"   # what model selection maximizes on validation (mobile: ndcg@10, see mobile_mb)
    dropped_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # mobile: < 3 interactions

    @property
    def has_categories(self) -> bool:
        return self.n_categories > 0


def load_protocol_c(path: str | Path = TAOBAO_SAMPLE, *, max_users: int | None = None) -> ProtocolC:
    """Read a Taobao file (Tianchi CSV ``.csv[.gz]`` or ``retail.txt[.gz]``) and build the LOO split.

    ``max_users`` keeps the first users in id order (for tiny test configs). Users with fewer than
    3 rows cannot give a train row, a validation and a test target: they raise DataFormatError.
    """
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path       # a shipped run names the repository's own sample relative to the clone
    if mobile_mb.is_mobile_file(path):
        return _load_mobile(path, max_users)
    data = read_retail(path) if "retail" in path.name else read_user_behavior(path)
    users = np.unique(data.user)
    if max_users is not None:
        keep = np.isin(data.user, users[:max_users])
        for name in ("user", "item", "category", "behavior", "timestamp"):
            setattr(data, name, getattr(data, name)[keep])
        users = users[:max_users]
    split = leave_one_out(data.user, data.timestamp)
    item_ids, item_dense = np.unique(data.item, return_inverse=True)
    # one category per item: the first one seen (items never change category in Tianchi data)
    has_cat = bool(np.all(data.category != UNKNOWN_CATEGORY))
    if has_cat:
        cat_ids, cat_dense = np.unique(data.category, return_inverse=True)
        item_category = np.full(len(item_ids), -1, dtype=np.int64)
        item_category[item_dense[::-1]] = cat_dense[::-1]
        n_cat = len(cat_ids)
    else:
        cat_dense = np.full(len(data), -1, dtype=np.int64)
        item_category = np.full(len(item_ids), -1, dtype=np.int64)
        n_cat = 0
        cat_ids = np.zeros(0, np.int64)
    train, val_q, test_q = _sequences(path, split.order, data.user, item_dense, data.behavior, cat_dense)
    return ProtocolC(path=str(path), train=train, val=val_q, test=test_q, n_items=len(item_ids),
                     n_behaviors=len(BEHAVIORS), n_categories=n_cat, item_ids=item_ids,
                     item_category=item_category, users=users,
                     category_ids=cat_ids.astype(np.int64))


def _sequences(path, order: np.ndarray, user: np.ndarray, item_dense: np.ndarray, behavior: np.ndarray,
               cat_dense: np.ndarray) -> tuple[list, Queries, Queries]:
    """Per user (rows in ``order``): the training sequence and the validation / test queries."""
    su = user[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    ends = np.r_[starts[1:], len(order)]
    train, val_q, test_q = [], ([], [], [], []), ([], [], [], [])
    for s, e in zip(starts, ends):
        rows = order[s:e]
        if len(rows) < 3:
            raise DataFormatError(path, None, f"user {user[rows[0]]} has {len(rows)} rows; protocol C needs >= 3")
        it = item_dense[rows].astype(np.int64)
        bh = behavior[rows].astype(np.int64)
        train.append((it[:-2], bh[:-2]))
        for q, cut in ((val_q, len(rows) - 2), (test_q, len(rows) - 1)):
            q[0].append((it[:cut], bh[:cut]))
            q[1].append(it[cut])
            q[2].append(bh[cut])
            q[3].append(cat_dense[rows[cut]])
    mk = lambda q: Queries(q[0], np.asarray(q[1]), np.asarray(q[2]), np.asarray(q[3], dtype=np.int64))  # noqa: E731
    return train, mk(val_q), mk(test_q)


def _load_mobile(path: Path, max_users: int | None) -> ProtocolC:
    """Protocol C-mobile: a `umask.train.data.mobile_mb` file, items over the file's vocabulary."""
    m = mobile_mb.read(path)
    users, counts = np.unique(m.user, return_counts=True)
    # a simulated user can be nearly silent for a week: fewer than 3 interactions give no train row,
    # validation and test target, so such users are left out (counted in ``dropped_users``, logged)
    few = users[counts < 3]
    users = users[counts >= 3][:max_users]
    keep = np.isin(m.user, users)
    if len(few):
        log.warning("%s: %d users with < 3 interactions left out: %s", path, len(few), few[:10].tolist())
    split = leave_one_out(m.user[keep], m.timestamp[keep])
    item_dense = np.searchsorted(m.item_ids, m.item[keep])
    no_cat = np.full(int(keep.sum()), -1, np.int64)
    train, val_q, test_q = _sequences(path, split.order, m.user[keep], item_dense, m.behavior[keep], no_cat)
    return ProtocolC(path=str(path), train=train, val=val_q, test=test_q, n_items=len(m.item_ids),
                     n_behaviors=len(mobile_mb.BEHAVIORS), n_categories=0, item_ids=m.item_ids,
                     item_category=np.full(len(m.item_ids), -1, np.int64), users=users,
                     behaviors=mobile_mb.BEHAVIORS, kind="mobile", data=str(m.meta.get("data", "real")),
                     source=str(m.meta.get("source", "")), val_metric="ndcg@10", item_kind=str(m.meta.get("items", "category")),
                     dropped_users=few.astype(np.int64))
