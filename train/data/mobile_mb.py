"""App-usage events -> the multi-behavior interaction layout of FatsMB (protocol C-mobile), numpy only.

    python -m umask.train.data.mobile_mb --source sim --n-users 500 --seed 0 --out artifacts/fatsmb_mobile/data/sim_s0_u500.mobile_mb.tsv.gz
    python -m umask.train.data.mobile_mb --source real --out artifacts/fatsmb_mobile/data/real.mobile_mb.tsv.gz
    python -m umask.train.data.mobile_mb --source sim --items place --out artifacts/fatsmb_mobile/places/data/sim_s0_u500.places.synthetic.mobile_mb.tsv.gz

FatsMB (paper 003) ranks items given a user's history of (item, behavior) pairs and the behavior of the
next interaction. Taobao gives that layout directly (`umask.train.data.taobao`: pv / fav / cart / buy).
A phone gives app-usage records instead: (user, time, base station, app, bytes), one line per app and
second with traffic (`umask.runtime.core.events.EventLog`; the real LLMApp sample and the simulator
both load into it). This module turns such records into interactions (user, item, behavior, timestamp)
that `umask.train.models.fatsmb.data.load_protocol_c` reads like a Taobao file, so the FatsMB trainer,
its prior, the baselines and the scorer run unchanged.

Decisions (each one is also the default of :class:`MobileMBConfig`):

- **Item = app category** (the catalog's 20 categories, raw LLMApp category ids 1..20). The item
  vocabulary is the whole catalog, not the categories present in the file, so a model trained on the
  synthetic users can score the real users (same ids) and the ranking always covers 20 items.
  Single apps (305) would give a sparser task; categories are what the other per-user tasks predict.
- **Or item = place** (``--items place``): the base station of the records (raw LLMApp location ids).
  Everything else is the same: a run of records at one station, at most ``session_gap_s`` apart, is
  one interaction (a stay with phone activity; records of different apps merge), and the behaviors
  keep their rules (``long`` = the stay's activity spans >= ``long_s``, ``heavy`` = a short stay in
  the user's top decile of traffic). The vocabulary is the catalog's whole station table (12,576
  ids), for the same reason as above: synthetic and real files share one item space, and the
  ranking covers every station, not only those a file visits.
- **Sessionize** (one interaction = a run of records): in each user's time order, a record joins the
  current interaction when it has the same item and follows the previous record by at most
  ``session_gap_s`` seconds (120 s: the simulator's `SESSION_GAP_S`, the gap that defines a session in
  its calibration on the real sample). Anything else (another category, a longer gap, another user)
  opens a new interaction. The trace logs one line per app and second of traffic, so without this
  the sequences are runs of the same item (in the real sample a record's next record has the same
  category 91 % of the time; after merging, 30 % of the interactions repeat the previous item, each
  after a gap > 2 min by construction). Merging by category rather than by app: two apps of one
  category back to back are the same item, and would otherwise be a duplicate at the item level.
  Every record lands in exactly one interaction (``n_records`` counts them; ``merged`` = records -
  interactions). The interaction's timestamp is its first record, its duration last - first record,
  its bytes the sum.
- **Behaviors** (one per interaction, the layout FatsMB has): ``long`` = the interaction lasts >=
  ``long_s`` seconds (180 s; 8 % of the interactions on the real sample and on the simulator alike);
  ``heavy`` = not long, and its bytes exceed the ``heavy_quantile`` (0.9) quantile of the same user's
  interactions before the held-out ones, i.e. a short burst in the user's top decile of traffic
  (downloads, updates, a clip); ``open`` = neither. The threshold is per user: users differ by orders
  of magnitude in traffic, and a global threshold would mark every interaction of a few users. The
  held-out interactions (the last ``holdout`` = 2 per user: validation and test of protocol C) do not
  enter it, so no label depends on a validation or test record. Why long wins over heavy: the two
  overlap (about 60 % of the long interactions are in the user's top traffic decile too, since long
  sessions carry more bytes); letting heavy win would leave "long" at 3 % of the interactions, while
  this order keeps three disjoint meanings (stayed / short heavy burst / glance) at about 8 / 5-6 / 86 %.

File layout (``*.mobile_mb.tsv[.gz]``): ``#`` lines carry the metadata as ``# key=value`` (data
real|synthetic, source, items, behaviors, item_ids = the vocabulary, the config, counts), then a
header line and one tab-separated row per interaction:
``user item behavior timestamp n_records duration_s bytes`` (behavior by name), sorted by (user, time).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umask.runtime.core.errors import DataFormatError, InputError
from umask.runtime.core.events import EventLog, open_text

log = logging.getLogger(__name__)

BEHAVIORS: tuple[str, ...] = ("open", "long", "heavy")     # code = position in this tuple
SUFFIXES = (".mobile_mb.tsv", ".mobile_mb.tsv.gz")
COLUMNS = ("user", "item", "behavior", "timestamp", "n_records", "duration_s", "bytes")
ITEMS = ("category", "place")      # what an item is: an app category or a base station (``convert(items=)``)


@dataclass
class MobileMBConfig:
    """How app-usage records become (item, behavior) interactions (see the module text for why)."""

    session_gap_s: int = 120        # same item, records at most this many seconds apart -> one interaction
    long_s: int = 180               # an interaction lasting >= this many seconds is 'long'
    heavy_quantile: float = 0.9     # bytes above this quantile of the user's non-held-out interactions -> 'heavy'
    holdout: int = 2                # last interactions per user kept out of the heavy threshold (val + test)


@dataclass
class MobileInteractions:
    """Interactions as parallel arrays, sorted by (user, timestamp); ``item`` holds raw category (or station) ids."""

    user: np.ndarray          # (M,) int64
    item: np.ndarray          # (M,) int64 raw item id (LLMApp category id; with items="place" the base-station id)
    behavior: np.ndarray      # (M,) int8 code into BEHAVIORS
    timestamp: np.ndarray     # (M,) int64 first record, local seconds
    n_records: np.ndarray     # (M,) int64 records merged into the interaction (>= 1)
    duration_s: np.ndarray    # (M,) int64 last - first record
    bytes: np.ndarray         # (M,) int64 summed traffic
    item_ids: np.ndarray      # (n_items,) the vocabulary (sorted raw ids), may include items never used
    meta: dict[str, Any] = field(default_factory=dict)
    event_interaction: np.ndarray | None = None   # (N,) interaction index of each event of the sorted EventLog

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def behavior_counts(self) -> dict[str, int]:
        counts = np.bincount(self.behavior, minlength=len(BEHAVIORS))
        return {name: int(counts[code]) for code, name in enumerate(BEHAVIORS)}


def sessionize(user: np.ndarray, ts: np.ndarray, key: np.ndarray, gap_s: int) -> np.ndarray:
    """Interaction index (N,) of each record; records sorted by (user, ts). A record opens a new
    interaction when its user or key differs from the previous record's, or it follows it by > gap_s."""
    if len(user) == 0:
        return np.zeros(0, np.int64)
    new = np.ones(len(user), bool)
    new[1:] = (user[1:] != user[:-1]) | (key[1:] != key[:-1]) | (np.diff(ts) > gap_s)
    return np.cumsum(new) - 1


def heavy_thresholds(user: np.ndarray, nbytes: np.ndarray, q: float, holdout: int) -> np.ndarray:
    """Per interaction (M,): the q-quantile of its user's interaction bytes, the last ``holdout``
    interactions of each user left out (inf when a user has none left: nothing is heavy)."""
    out = np.full(len(user), np.inf)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(user)]):
        fit = nbytes[s: max(s, e - holdout)]
        if len(fit):
            out[s:e] = np.quantile(fit, q)
    return out


def convert(events: EventLog, catalog: Any, cfg: MobileMBConfig | None = None, *,
            meta: dict[str, Any] | None = None, items: str = "category") -> MobileInteractions:
    """App-usage events -> interactions with items = app categories (raw LLMApp ids; ``items="place"``:
    base stations) and behaviors open / long / heavy. ``catalog``: `umask.runtime.core.catalog.Catalog`
    (app -> category, the station table)."""
    cfg = cfg or MobileMBConfig()
    if items not in ITEMS:
        raise InputError(f"items must be one of {ITEMS}, got {items!r}")
    if not 0.0 < cfg.heavy_quantile < 1.0:
        raise InputError(f"heavy_quantile must lie in (0, 1), got {cfg.heavy_quantile}")
    if cfg.session_gap_s < 0 or cfg.long_s < 0 or cfg.holdout < 0:
        raise InputError(f"session_gap_s, long_s and holdout must be >= 0, got {cfg}")
    ev = events.sorted()
    if len(ev) == 0:
        raise InputError("no events to convert")
    apps = catalog.apps
    dense = apps.category_index(ev.app)                            # raises on an app outside the catalog
    key = apps.category_ids[dense]                                 # raw category id = the item
    vocab = np.asarray(apps.category_ids, np.int64)
    if items == "place":
        catalog.stations.index_of(ev.bs)                           # raises on a station outside the table
        key, vocab = ev.bs.astype(np.int64), np.asarray(catalog.stations.ids, np.int64)
    sid = sessionize(ev.user, ev.ts, key, cfg.session_gap_s)       # (N,)
    first = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])       # first record of each interaction
    m = len(first)
    n_records = np.bincount(sid, minlength=m).astype(np.int64)
    last = first + n_records - 1
    user, item, start = ev.user[first], key[first], ev.ts[first]
    duration = ev.ts[last] - start
    nbytes = np.bincount(sid, weights=ev.bytes.astype(np.float64), minlength=m).astype(np.int64)
    thr = heavy_thresholds(user, nbytes, cfg.heavy_quantile, cfg.holdout)
    behavior = np.zeros(m, np.int8)                                # open
    behavior[nbytes > thr] = BEHAVIORS.index("heavy")
    behavior[duration >= cfg.long_s] = BEHAVIORS.index("long")     # long wins over heavy (module text)
    out = MobileInteractions(user, item, behavior, start, n_records, duration, nbytes,
                             np.sort(vocab), dict(meta or {}), sid)
    out.meta.update({"items": items, "behaviors": ",".join(BEHAVIORS), "config": asdict(cfg),
                     "n_events": int(len(ev)), "n_interactions": m, "merged": int(len(ev) - m),
                     "n_users": int(len(np.unique(user))), "behavior_counts": out.behavior_counts()})
    log.info("mobile_mb: %d events -> %d interactions (%d merged), %d users, behaviors %s",
             len(ev), m, len(ev) - m, out.meta["n_users"], out.meta["behavior_counts"])
    return out


# ------------------------------------------------------------------------------------------------
# File layout
# ------------------------------------------------------------------------------------------------
def is_mobile_file(path: str | Path) -> bool:
    return str(path).endswith(SUFFIXES)


def write(inter: MobileInteractions, path: str | Path) -> Path:
    """Write the interactions (atomically: temp file + rename; ``.gz`` compresses)."""
    path = Path(path)
    if not is_mobile_file(path):
        raise InputError(f"{path}: the name must end with one of {SUFFIXES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**inter.meta, "item_ids": ",".join(str(int(i)) for i in inter.item_ids)}
    buf = io.StringIO()
    for k, v in meta.items():
        buf.write(f"# {k}={json.dumps(v) if isinstance(v, (dict, list)) else v}\n")
    buf.write("\t".join(COLUMNS) + "\n")
    cols = [inter.user, inter.item, np.asarray(BEHAVIORS)[inter.behavior], inter.timestamp,
            inter.n_records, inter.duration_s, inter.bytes]
    buf.write("".join("\t".join(map(str, row)) + "\n" for row in zip(*(c.tolist() for c in cols))))
    tmp = path.with_name(path.name + ".tmp")
    data = buf.getvalue().encode("utf-8")
    tmp.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if path.suffix == ".gz" else data)
    tmp.replace(path)
    return path


def read(path: str | Path) -> MobileInteractions:
    """Read a ``*.mobile_mb.tsv[.gz]`` file written by :func:`write`; bad lines raise DataFormatError."""
    path = Path(path)
    meta: dict[str, Any] = {}
    rows: list[list[int]] = []
    code = {b: i for i, b in enumerate(BEHAVIORS)}
    header_seen = False
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if line.startswith("#"):
                k, sep, v = line[1:].strip().partition("=")
                if not sep:
                    raise DataFormatError(path, lineno, f"metadata line without '=': {line[:60]!r}")
                meta[k] = json.loads(v) if v[:1] in "{[" else v
                continue
            f = line.split("\t")
            if not header_seen:
                if tuple(f) != COLUMNS:
                    raise DataFormatError(path, lineno, f"expected the header {COLUMNS}, got {tuple(f)[:8]}")
                header_seen = True
                continue
            if len(f) != len(COLUMNS):
                raise DataFormatError(path, lineno, f"expected {len(COLUMNS)} tab-separated fields, found {len(f)}")
            if f[2] not in code:
                raise DataFormatError(path, lineno, f"behavior {f[2]!r} not in {BEHAVIORS}")
            try:
                rows.append([int(f[0]), int(f[1]), code[f[2]], *(int(x) for x in f[3:])])
            except ValueError:
                raise DataFormatError(path, lineno, f"non-integer field in {line[:80]!r}") from None
    if not rows:
        raise DataFormatError(path, None, "no interactions")
    if meta.get("behaviors", ",".join(BEHAVIORS)) != ",".join(BEHAVIORS):
        raise DataFormatError(path, None, f"behaviors {meta['behaviors']!r}, this reader knows {BEHAVIORS}")
    a = np.asarray(rows, np.int64)
    vocab = (np.asarray([int(x) for x in str(meta["item_ids"]).split(",")], np.int64) if "item_ids" in meta
             else np.unique(a[:, 1]))
    if not np.isin(a[:, 1], vocab).all():
        raise DataFormatError(path, None, "an item lies outside the file's item_ids vocabulary")
    return MobileInteractions(a[:, 0], a[:, 1], a[:, 2].astype(np.int8), a[:, 3], a[:, 4], a[:, 5], a[:, 6],
                              np.sort(vocab), meta)


# ------------------------------------------------------------------------------------------------
# Sources: the real LLMApp sample, a trace file, or the simulator (SYNTHETIC)
# ------------------------------------------------------------------------------------------------
def load_source(source: str, *, n_users: int = 500, seed: int = 0, days: int = 7, trace: str | None = None,
                data_dir: str | Path | None = None) -> tuple[EventLog, Any, dict[str, Any]]:
    """(events, catalog, meta) of ``source``: real (the shipped 6-user sample), sim (the calibrated
    simulator, SYNTHETIC) or trace (a trace file; ``trace`` must name it and say nothing about realness)."""
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.train.simulator import DEFAULT_DATA_DIR, TSINGHUA_DIR

    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    catalog = load_llmapp_catalog(root / TSINGHUA_DIR if (root / TSINGHUA_DIR).is_dir() else root)
    if source == "real":
        from umask.train.simulator.calibration import load_real_sample

        return load_real_sample(data_dir), catalog, {"data": "real", "source": "tsinghua llmapp 6-user one-day sample"}
    if source == "sim":
        from umask.train.simulator import SimulatorConfig, simulate

        events, _ = simulate(SimulatorConfig(n_users=n_users, days=days, seed=seed), catalog, data_dir, progress=False)
        return events, catalog, {"data": "synthetic", "source": f"simulator n_users={n_users} seed={seed} days={days}"}
    if source == "trace":
        from umask.runtime.core.events import read_trace

        if not trace:
            raise InputError("--source trace needs --trace PATH")
        data = "synthetic" if ".synthetic." in Path(trace).name else "real"
        return read_trace(trace), catalog, {"data": data, "source": f"trace {trace}"}
    raise InputError(f"source must be real, sim or trace, got {source!r}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.train.data.mobile_mb", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=("real", "sim", "trace"), default="real")
    p.add_argument("--n-users", type=int, default=500, help="simulator users (--source sim)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (--source sim)")
    p.add_argument("--days", type=int, default=7, help="simulator days (--source sim)")
    p.add_argument("--trace", default=None, help="trace file (--source trace)")
    p.add_argument("--session-gap-s", type=int, default=MobileMBConfig.session_gap_s)
    p.add_argument("--long-s", type=int, default=MobileMBConfig.long_s)
    p.add_argument("--heavy-quantile", type=float, default=MobileMBConfig.heavy_quantile)
    p.add_argument("--items", choices=ITEMS, default="category", help="item = app category or place (base station)")
    p.add_argument("--out", required=True, help="output file, *.mobile_mb.tsv.gz")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    events, catalog, meta = load_source(ns.source, n_users=ns.n_users, seed=ns.seed, days=ns.days, trace=ns.trace)
    cfg = MobileMBConfig(session_gap_s=ns.session_gap_s, long_s=ns.long_s, heavy_quantile=ns.heavy_quantile)
    inter = convert(events, catalog, cfg, meta=meta, items=ns.items)
    log.info("wrote %s", write(inter, ns.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
