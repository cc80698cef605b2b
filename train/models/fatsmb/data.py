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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from umask.runtime.core.errors import DataFormatError
from umask.train.data.splits import leave_one_out
from umask.train.data.taobao import BEHAVIORS, UNKNOWN_CATEGORY, read_retail, read_user_behavior

TAOBAO_SAMPLE = Path(__file__).resolve().parents[3] / "data" / "taobao_user_behavior" / "UserBehavior_head.csv.gz"


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

    @property
    def has_categories(self) -> bool:
        return self.n_categories > 0


def load_protocol_c(path: str | Path = TAOBAO_SAMPLE, *, max_users: int | None = None) -> ProtocolC:
    """Read a Taobao file (Tianchi CSV ``.csv[.gz]`` or ``retail.txt[.gz]``) and build the LOO split.

    ``max_users`` keeps the first users in id order (for tiny test configs). Users with fewer than
    3 rows cannot give a train row, a validation and a test target: they raise DataFormatError.
    """
    path = Path(path)
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
    order = split.order
    su = data.user[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    ends = np.r_[starts[1:], len(order)]
    train, val_q, test_q = [], ([], [], [], []), ([], [], [], [])
    for s, e in zip(starts, ends):
        rows = order[s:e]
        if len(rows) < 3:
            raise DataFormatError(path, None, f"user {data.user[rows[0]]} has {len(rows)} rows; protocol C needs >= 3")
        it = item_dense[rows].astype(np.int64)
        bh = data.behavior[rows].astype(np.int64)
        train.append((it[:-2], bh[:-2]))
        for q, cut in ((val_q, len(rows) - 2), (test_q, len(rows) - 1)):
            q[0].append((it[:cut], bh[:cut]))
            q[1].append(it[cut])
            q[2].append(bh[cut])
            q[3].append(cat_dense[rows[cut]])
    mk = lambda q: Queries(q[0], np.asarray(q[1]), np.asarray(q[2]), np.asarray(q[3], dtype=np.int64))  # noqa: E731
    return ProtocolC(path=str(path), train=train, val=mk(val_q), test=mk(test_q), n_items=len(item_ids),
                     n_behaviors=len(BEHAVIORS), n_categories=n_cat, item_ids=item_ids,
                     item_category=item_category, users=users,
                     category_ids=cat_ids.astype(np.int64))
