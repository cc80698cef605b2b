"""The main job's step 10 (benchmarks/demo_families.py): each shipped family checkpoint under checkpoints/ is
exported to a signed bundle and served by its torch-free session on REAL data, and what it serves is better
than a simple rule computed here on the same inputs. Quick mode: fp32, every 8th Milan window / Taobao user."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from umask.bench.demo import demo_key
from umask.bench.demo_families import FAMILY_MODELS, ROOT, family_models
from umask.cli import main

SHIPPED = dict(FAMILY_MODELS)
TSINGHUA_SAMPLE = ROOT / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"


def _need(family: str) -> tuple[tuple[str, str], ...]:
    if not (ROOT / SHIPPED[family] / "config.json").is_file():
        pytest.fail(f"{SHIPPED[family]}: the shipped {family} checkpoint is missing")
    return ((family, SHIPPED[family]),)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("families")
    key, pub = demo_key(out / "keys")
    return out, key, pub


def _interp_nmae(every: int = 8) -> float:
    """The A2 simple row (linear interpolation over time per cell) on the same every-8th REAL test windows."""
    from umask.bench.accuracy import grid as harness
    from umask.bench.accuracy.grid_umask_v2 import protocol_windows
    from umask.runtime.core.gridimpute import linear_interpolation_impute
    from umask.train.common.metrics import mae
    from umask.train.data.grids import milan_grid

    _, iw = protocol_windows(harness.GridSpec(milan_grid()), "test")
    truth, hidden = iw.truth[::every], iw.mask[::every]                       # (n, T, N)
    return mae(linear_interpolation_impute(truth, hidden), truth, hidden)


def test_ustsllm_shipped_bundle_beats_interpolation_on_real_milan(keys: tuple[Path, Path, Path]) -> None:
    out, key, pub = keys
    rec = family_models(out, True, key, pub, models=_need("ustsllm"))["ustsllm"]
    rows = {r["task"]: r for r in rec["rows"]}
    assert rows["A1"]["windows"] == 37 and rows["A2"]["windows"] == 19
    assert rows["A2"]["nmae"] < _interp_nmae()              # its imputation beats the interpolation it refines
    assert rows["A1"]["nmae"] < 0.5                         # all-zero scores 0.77 on this scale


def test_fatsmb_shipped_bundle_ranks_real_taobao_users_better_than_recent_items(keys: tuple[Path, Path, Path],
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from umask.train.baselines import seqrec
    from umask.train.common.metrics import full_ranking_metrics
    from umask.train.models.fatsmb.data import TAOBAO_SAMPLE, load_protocol_c

    out, key, pub = keys
    rec = family_models(out, True, key, pub, models=_need("fatsmb"))["fatsmb"]
    d = load_protocol_c(TAOBAO_SAMPLE)
    users = np.arange(0, len(d.test), 8)
    m = seqrec.make("recent").fit(d.train, d.n_items, d.n_behaviors)
    recent = full_ranking_metrics(m.score([d.test.prefixes[u] for u in users], d.test.behavior[users]),
                                  d.test.item[users], ks=(10,))["ndcg@10"]
    (row,) = rec["rows"]
    # NDCG@10: the prior puts the user's repeats in a better order than recency (0.127 vs 0.097 on all 814 users;
    # Recall@10 is level with recent items there, 0.200 vs 0.198, so it is not asserted)
    assert row["users"] == len(users) and row["ndcg@10"] > float(np.mean(recent)) + 0.01
    assert len(rec["example"]["items"]) == 5 and rec["example"]["behavior"] in d.behaviors
    # the same request from the command line: a Taobao-style log of that user (rows shuffled: ordered by timestamp)
    u = rec["example"]["user"]
    items, behs = d.test.prefixes[u]
    rows = [f"{u},{int(d.item_ids[i])},0,{d.behaviors[b]},{1_500_000_000 + t}" for t, (i, b) in enumerate(zip(items, behs))]
    log = out / "history.csv"
    log.write_text("user_id,item_id,category_id,behavior,timestamp\n" + "\n".join(rows[::-1]) + "\n")
    capsys.readouterr()
    assert main(["run", "--bundle", str(out / "fatsmb_bundle"), "--history", str(log), "--behavior",
                 rec["example"]["behavior"], "-k", "5", "--trusted-keys", str(pub)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["items"] == rec["example"]["items"] and got["skipped_unknown"] == 0


def test_gtslum_shipped_bundle_names_categories_for_the_real_users(keys: tuple[Path, Path, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out, key, pub = keys
    rec = family_models(out, True, key, pub, models=_need("gtslum"))["gtslum"]
    assert len(rec["users"]) == 6
    for u in rec["users"]:
        assert len(set(u["top5"])) == 5
    manifest = json.loads((out / "gtslum_bundle" / "manifest.json").read_text())
    assert manifest["parity"]["fp32"]["top5_agreement"] == 1.0     # the bundle ranks the REAL windows as torch does
    from umask.runtime.session import Session

    for prec in ("fp32", "int8"):      # the head's log-prior is -inf for unseen categories: its golden I/O still pins it
        with Session.open(out / "gtslum_bundle", precision=prec, trusted_keys=[pub], self_test=True) as s:
            assert s.next_apps(TSINGHUA_SAMPLE, k=3)
    assert 0.0 <= rec["recall@5_of_used"] <= 1.0
    # the first user's request from the command line: events.csv of the day up to 18:00 -> the same top 5
    from umask.runtime.core.events import read_trace

    ev = read_trace(TSINGHUA_SAMPLE)
    first = rec["users"][0]
    e = ev.for_user(first["user"])
    day = int(ev.ts.min()) // 86_400 * 86_400
    e = e.between(day, day + 18 * 3600)
    stamp = lambda t: time.strftime("%Y%m%d%H%M%S", time.gmtime(int(t)))   # noqa: E731 - local wall clock as UTC
    hist = out / "events.csv"
    hist.write_text("time,app_id,base_id,bytes\n" + "".join(f"{stamp(t)},{a},{b},{n}\n"
                                                             for t, a, b, n in zip(e.ts, e.app, e.bs, e.bytes)))
    capsys.readouterr()
    assert main(["run", "--bundle", str(out / "gtslum_bundle"), "--history", str(hist), "--now", stamp(day + 18 * 3600),
                 "-k", "5", "--trusted-keys", str(pub)]) == 0
    assert [a["category"] for a in json.loads(capsys.readouterr().out)["apps"]] == first["top5"]
    assert main(["run", "--bundle", str(out / "gtslum_bundle"), "--history", str(hist), "--now", "20160420",
                 "--trusted-keys", str(pub)]) == 3                     # not a YYYYMMDDhhmmss time
