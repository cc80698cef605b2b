"""Trace writing: simulate and write the SYNTHETIC trace (official Tsinghua layout), the per-user
metadata and ``SYNTHETIC.md`` with the validation table (`write_synthetic`).

Part of `umask.train.simulator`. ``python -m umask.train.simulator generate --users 1000 --out artifacts/sim``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date
from pathlib import Path

from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.events import read_trace, write_official_trace
from umask.train.simulator.calibration import fit_calibration
from umask.train.simulator.config import (
    ARCHETYPES,
    README_NAME,
    SAMPLE_FILE,
    TRACE_NAME,
    USER_ID_BASE,
    USERS_NAME,
    SimulatorConfig,
    _paths,
)
from umask.train.simulator.validation import format_validation, validate
from umask.train.simulator.world import simulate

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def write_synthetic(out_dir: str | Path, config: SimulatorConfig, catalog: Catalog | None = None,
                    data_dir: str | Path | None = None, *, progress: bool | None = None,
                    with_validation: bool = True) -> dict[str, Path]:
    """Simulate and write ``App_usage_trace.synthetic.txt.gz`` (official layout, via
    `write_official_trace`), ``users.synthetic.json`` and ``SYNTHETIC.md``. Returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ts_dir, _ = _paths(data_dir)
    if catalog is None:
        catalog = load_llmapp_catalog(ts_dir)
    cal = fit_calibration(catalog, data_dir)
    t0 = time.perf_counter()
    events, meta = simulate(config, catalog, data_dir, calibration=cal, progress=progress)
    gen_s = time.perf_counter() - t0
    paths = {"trace": out / TRACE_NAME, "users": out / USERS_NAME, "readme": out / README_NAME}
    write_official_trace(events, paths["trace"])
    doc = {"synthetic": True, "generator": "umask.train.simulator", "config": config.to_dict(),
           "id_space": "llmapp", "user_id_base": USER_ID_BASE,
           "archetypes": {k: a.to_dict() for k, a in ARCHETYPES.items()}, "users": meta}
    tmp = paths["users"].with_name(paths["users"].name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(paths["users"])
    table = ""
    if with_validation:
        rows = validate(events, read_trace(ts_dir / SAMPLE_FILE), catalog, data_dir=data_dir)
        table = format_validation(rows, title=f"SYNTHETIC simulator (seed {config.seed}, {config.n_users} users) "
                                              f"vs REAL data")
    counts: dict[str, int] = {}
    for m in meta:
        counts[m["archetype"]] = counts.get(m["archetype"], 0) + 1
    cfg = json.dumps(config.to_dict(), indent=2)
    text = f"""# SYNTHETIC data -- not real users

Everything in this folder was **generated** by the project's calibrated agent-based simulator
(`umask.train.simulator`); no record belongs to a real person. Use it for PROTOCOL B benchmarks and
label every result computed on it *synthetic*.

- `{TRACE_NAME}`: {len(events):,} records, official Tsinghua layout
  (`user_id time(YYYYMMDDhhmmss) base_station_id app_id traffic_bytes`), LLMApp id space (apps
  1..305 of `llmapp_app.csv`, base stations of `llmapp_location.csv`); user ids start at
  {USER_ID_BASE} so they never collide with real users.
- `{USERS_NAME}`: per user the archetype, routine, activity factor, anchors (real station ids with
  coordinates and dominant POI type), explored stations, top categories and favourite apps; also
  the archetype parameters and the config.
- Generated in {gen_s:.1f} s by `python -m umask.train.simulator generate --users {config.n_users} --seed {config.seed} --out <dir>`
  (days={config.days}, start {config.start_date}, a {date.fromisoformat(config.start_date).strftime('%A')}).

## Config (deterministic given the seed)
```json
{cfg}
```
Archetype counts: {json.dumps(counts)}

## How it was made
Calibrated at run time on REAL data: the LLMApp 6-user sample of the Tsinghua App Usage trace
(burst structure, hourly episode starts, per-record station switching, app x place and app x time
affinities, records per user-day), LLMApp's per-category traffic bins of the full trace (category
shares, bytes per record), the LLMApp station table (anchors chosen among real stations by POI mix)
and the Milan Telecom mean daily internet profile (rhythm prior). Assumptions (archetype routines,
place-kind affinities, travel speed) are documented in the module docstring and `ARCHETYPES`.

## Validation (SYNTHETIC vs REAL)
```
{table}
```
"""
    paths["readme"].write_text(text, encoding="utf-8")
    log.info("wrote SYNTHETIC trace %s (%d records), %s, %s", paths["trace"], len(events), paths["users"],
             paths["readme"])
    return paths
