"""The torch-free GTS-LUM session: ``next_apps(history, k)`` on a verified bundle (numpy + onnxruntime).

    from umask.runtime.session import Session
    with Session.open("artifacts/gtslum/bundle", precision="int8", trusted_keys=[...]) as s:
        s.next_apps("history.csv", k=5)          # [{"category": "Social Networking", "score": ...}, ...]

A request: the user's raw events (an `EventLog`, or a history file read by
`umask.runtime.core.history.load_history`) and the start of the target hour ``now_ts`` (default:
the first 15-minute boundary after the last event). Events at or after ``now_ts`` are refused (they
would be the future). The inputs are built by `umask.runtime.families.gtslum.sequence`, the same code
training used, and run through the bundle's three networks: qformer (every behavior slot), lum (the
target-aware sequence through the frozen decoder blocks) and head (K category scores).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.bundle import JSON, MAP, OBJ, PATH, STR, read_verified, register_manifest_schema
from umask.runtime.core.errors import BundleError, InputError
from umask.runtime.core.events import EventLog
from umask.runtime.core.history import load_history
from umask.runtime.core.signing import verify_bundle as verify_signed
from umask.runtime.engines.ort import inference_session, session_options
from umask.runtime.families.gtslum import sequence as sq
from umask.runtime.session import FamilySession

log = logging.getLogger(__name__)

FAMILY = "gtslum"
NETWORKS = ("qformer", "lum", "head")
PRECISIONS = ("fp32", "int8")
register_manifest_schema(FAMILY, {"model": OBJ({"config": JSON, "category_names": JSON, "poi_names": JSON}, extra=JSON),
                                  "artifacts": MAP(MAP(JSON)), "tables": PATH},
                         {"parity": JSON, "parity_inputs": STR(), "checkpoint": STR()})


class Session(FamilySession):
    family = FAMILY

    def __init__(self, root: Path, manifest: dict[str, Any], precision: str, threads: int) -> None:
        self.root, self.manifest, self.precision, self.threads = root, manifest, precision, threads
        m = manifest["model"]
        self.cfg = m["config"]
        self.categories = list(m["category_names"])
        self.K = int(self.cfg["n_categories"])
        self.P = int(self.cfg["n_places"])
        if len(self.categories) != self.K:
            raise BundleError(f"{root}/manifest.json: model.category_names has {len(self.categories)} names, "
                              f"config.n_categories = {self.K}")
        with np.load(io.BytesIO(read_verified(root, manifest["tables"], manifest)), allow_pickle=False) as t:
            self.tables = {k: t[k] for k in (
                "app_ids", "app_category", "station_ids", "station_place", "node_emb", "sid_table")}
        self.sessions = {}
        for net in NETWORKS:
            art = manifest["artifacts"].get(net, {}).get(precision, {})
            if art.get("status") not in ("ok", "shared") or not art.get("file"):
                raise BundleError(f"{root}/manifest.json: artifacts.{net}.{precision} is not available "
                                  f"(status {art.get('status')!r})")
            self.sessions[net] = inference_session(read_verified(root, art["file"], manifest),
                                                   session_options(threads))
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, bundle: str | Path, *, precision: str = "fp32", threads: int = 1, trusted_keys: Any = None,
             allow_unsigned: bool = False, **kwargs: Any) -> Session:
        if kwargs:
            raise InputError(f"Session.open: unknown option(s) {sorted(kwargs)} for a gtslum bundle")
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
            raise InputError(f"threads must be an integer in [1, 256], got {threads!r}")
        root = Path(bundle)
        manifest = verify_signed(root, trusted_keys=trusted_keys, allow_unsigned=allow_unsigned)
        return cls(root, manifest, precision, threads)

    def describe(self) -> dict[str, Any]:
        return {"family": FAMILY, "bundle": str(self.root), "precision": self.precision, "threads": self.threads,
                "engine": "onnxruntime CPUExecutionProvider", "categories": self.K,
                "decoder": self.manifest["model"].get("decoder"), "timestamps": self.cfg["timestamps"],
                "target": self.cfg["target"], "modalities": self.cfg["modalities"]}

    def close(self) -> None:
        self.sessions = {}
        self._closed = True

    # -- requests ---------------------------------------------------------------------------------
    def _history(self, history: EventLog | str | Path) -> EventLog:
        if isinstance(history, (str, Path)):
            return load_history(history)
        if not isinstance(history, EventLog):
            raise InputError(f"history must be an EventLog or a history file path, got {type(history).__name__}")
        return history

    def _behaviors(self, ev: EventLog) -> sq.Behaviors:
        t = self.tables
        pos = np.clip(np.searchsorted(t["app_ids"], ev.app), 0, len(t["app_ids"]) - 1)
        if len(ev) and not (t["app_ids"][pos] == ev.app).all():
            bad = np.unique(ev.app[t["app_ids"][pos] != ev.app])[:5].tolist()
            raise InputError(f"history: app ids absent from the bundle's catalog, e.g. {bad}")
        spos = np.clip(np.searchsorted(t["station_ids"], ev.bs), 0, len(t["station_ids"]) - 1)
        place = np.where(t["station_ids"][spos] == ev.bs, t["station_place"][spos], self.P)  # unknown station
        return sq.behaviors_from_events(ev.ts, t["app_category"][pos], place, ev.bytes, self.P)

    def scores(self, history: EventLog | str | Path, now_ts: int | None = None) -> np.ndarray:
        """(K,) float32 category scores for the hour starting at ``now_ts``."""
        if self._closed:
            raise InputError("session is closed")
        ev = self._history(history)
        if now_ts is None:
            if not len(ev):
                raise InputError("now_ts is required for an empty history")
            now_ts = (int(ev.ts.max()) // sq.INTERVAL_SECONDS + 1) * sq.INTERVAL_SECONDS
        if isinstance(now_ts, bool) or not isinstance(now_ts, (int, np.integer)) or not 0 <= int(now_ts) < 2**62:
            raise InputError(f"now_ts must be an integer of local seconds, got {now_ts!r}")
        now_ts = int(now_ts)
        if len(ev) and int(ev.ts.max()) >= now_ts:
            raise InputError(f"history has events at or after now_ts={now_ts} (the target hour must follow it)")
        b = self._behaviors(ev)
        c = self.cfg
        seq = sq.layout(b, now_ts, max_intervals=c["max_intervals"], per_interval=c["per_interval"],
                        timestamps=c["timestamps"], target=c["target"])
        node = self.tables["node_emb"]
        hh = sq.hour_histogram(b, self.K)
        graph = sq.graph_summary(b, node, self.K)
        table = sq.table_attributes(b, self.K, self.P)
        nb = len(seq.beh_category)
        sid = self.tables["sid_table"][seq.beh_category * (self.P + 1) + seq.beh_place]
        with self._lock:
            fused = self.sessions["qformer"].run(None, {
                "sid": sid, "app": node[seq.beh_category], "place": node[self.K + seq.beh_place],
                "graph": np.repeat(graph[None], nb, 0), "table": np.repeat(table[None], nb, 0)})[0]
            th = sq.target_shares(hh, now_ts, float(c.get("target_hist_hours", 0.0)))[None]   # 0: bundles before it
            user = self.sessions["lum"].run(None, {
                "types": seq.types[None], "index": seq.index[None], "time_id": seq.time_id[None], "beh": fused[None],
                "target_hist": th})[0]
            return self.sessions["head"].run(None, {"user": user, "target_hist": th, "table": table[None]})[0][0]

    def next_apps(self, history: EventLog | str | Path, k: int = 5, now_ts: int | None = None) -> list[dict[str, Any]]:
        """The top ``k`` app categories for the hour starting at ``now_ts``, best first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= self.K:
            raise InputError(f"k must be an integer in [1, {self.K}], got {k!r}")
        s = self.scores(history, now_ts)
        order = np.argsort(-s, kind="stable")[: int(k)]
        return [{"category": self.categories[i], "score": float(s[i])} for i in order]


def run_main(argv: Sequence[str] | None = None) -> int:
    """``umask run --bundle DIR --history FILE [--now YYYYMMDDhhmmss] [-k 5] [--precision fp32|int8]``: the next
    hour's app categories of one user as JSON (what `umask.cli` dispatches a gtslum bundle to)."""
    import argparse
    import json
    import sys

    from umask.runtime.core.errors import BUNDLE_ERRORS, DataFormatError, exit_status_help
    from umask.runtime.core.history import compact_time
    from umask.runtime.core.signing import add_key_options

    p = argparse.ArgumentParser(
        prog="umask run (gtslum bundle)", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rank the app categories one user will open in the next hour with a GTS-LUM bundle, privately "
                    "(numpy + onnxruntime, no torch, no network); prints JSON. The bundle must be signed by a trusted "
                    "key (--trusted-keys or $UMASK_TRUSTED_KEYS) unless --allow-unsigned.",
        epilog="--history: one user's events: events.csv (header time,app_id,base_id,bytes; time = local\n"
               "YYYYMMDDhhmmss), the official Tsinghua trace text or the LLMApp CSV; app and base-station ids in\n"
               "LLMApp's id space. Events at or after --now are refused (they would be the future).\n\n"
               + exit_status_help(InputError, DataFormatError, *BUNDLE_ERRORS) + "\n\n"
               "example: umask run --bundle artifacts/bundles/gtslum --history events.csv --now 20160420180000 -k 5 "
               "--trusted-keys keys/umask.pub")
    p.add_argument("--bundle", required=True, help="bundle directory written by 'umask export --family gtslum'")
    p.add_argument("--history", required=True, help="the user's event history file")
    p.add_argument("--now", type=int, default=None,
                   help="start of the target hour as local YYYYMMDDhhmmss (default: the first 15-minute boundary "
                        "after the last event)")
    p.add_argument("-k", type=int, default=5, help="categories to return, best first (default 5)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default) or int8")
    add_key_options(p)
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    now_ts = compact_time(ns.now, "--now")
    with Session.open(ns.bundle, precision=ns.precision, trusted_keys=ns.trusted_keys,
                      allow_unsigned=ns.allow_unsigned) as s:
        apps = s.next_apps(ns.history, k=ns.k, now_ts=now_ts)
    print(json.dumps({"family": FAMILY, "now": ns.now, "apps": apps}, indent=1))
    return 0


__all__ = ["Session", "FAMILY", "run_main"]
