"""The U-MASK family's recommendation on PROTOCOL D windows (issue 14): the category mapping between U-MASK's
app channels and D's categories, and a real completion of the shipped checkpoint ranking the categories of
the REAL 6-user sample's windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from umask.bench.accuracy import gtslum_umask as gu  # noqa: E402
from umask.runtime.core.errors import InputError  # noqa: E402
from umask.runtime.core.featurize import channel_names  # noqa: E402
from umask.train.models.gtslum import data as gd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "checkpoints" / "umask_small"


@pytest.fixture(scope="module")
def real() -> gd.Users:
    return gd.real_users()


def test_category_mapping_is_checked_by_name(real):
    from umask.bench.accuracy.user import real_population

    chans = channel_names(real_population().catalog)
    K = real.n_categories
    assert gu.category_mapping(chans, real.category_names, K + 2).tolist() == list(range(K))
    perm = list(reversed(real.category_names))                       # D in another order: mapped by name
    m = gu.category_mapping(chans, perm, K + 2)
    assert [chans[1 + i][4:] for i in m] == perm
    with pytest.raises(InputError, match="category mismatch"):
        gu.category_mapping(chans, [*real.category_names[:-1], "Not A Category"], K + 2)
    with pytest.raises(InputError, match="category mismatch"):
        gu.category_mapping(chans, real.category_names[:-1], K + 2)
    with pytest.raises(InputError, match="C = 21"):
        gu.category_mapping(chans, real.category_names, K + 1)
    with pytest.raises(InputError, match="not unique"):
        gu.category_mapping(chans, [*real.category_names[:-1], real.category_names[0]], K + 2)


def test_rank_scores_ties_by_popularity_then_index():
    eng = np.array([[0.0, 2.0, 0.0, 0.0, 1.0]])
    pop = np.array([0.1, 0.0, 0.1, 0.5, 0.3])
    order = np.argsort(-gu.rank_scores(eng, pop), axis=1, kind="stable")[0]
    assert order.tolist() == [1, 4, 3, 0, 2]


class Recorder:
    """Delegates to the U-MASK adapter and keeps every completion it returns."""

    def __init__(self, pred):
        self.pred, self.outputs, self.starts, self.users = pred, [], [], []

    def __getattr__(self, name):
        return getattr(self.pred, name)

    def __call__(self, batch):
        out = self.pred(batch)
        self.outputs.append(out)
        self.starts.append(np.asarray(batch.starts))
        self.users.append(np.asarray(batch.users))
        return out


@pytest.mark.skipif(not (CKPT / "model.safetensors").is_file(), reason="the shipped checkpoint is not in this tree")
def test_shipped_umask_ranks_real_windows_from_its_completion(real):
    from umask.bench.accuracy.user import real_population
    from umask.train.models.gtslum import trainer as gt

    pop = real_population()
    wins = [w for w in gd.windows(real, "test") if w.user == min(real.behaviors)][:4]
    rec = Recorder(gu.predictor(CKPT))
    scores, diag = gu.umask_scores(rec, pop, real, wins)
    K = real.n_categories
    assert scores.shape == (len(wins), K) and diag["windows"] == len(wins) and diag["fallback_windows_no_layout"] == 0
    assert all(sorted(r) == list(range(1, K + 1)) for r in scores)           # a full ranking per window
    out = np.concatenate(rec.outputs)                                         # (n, C, 4, H, W) real completions
    assert out.shape[0] == len(wins) and out.shape[1] == K + 2 and out.shape[2] == 4
    starts = np.concatenate(rec.starts)
    slot = pop.cfg.slot_seconds
    for i, w in enumerate(wins):                     # the ranking follows the completion's app engagement
        j = int(np.flatnonzero(starts == (w.target_ts - pop.start_ts) // slot)[0])
        eng = out[j, 1:K + 1].astype(np.float64).sum(axis=(1, 2, 3))
        assert eng.max() > 0
        top = np.argsort(-scores[i])[:3]
        assert np.all(eng[top][:-1] >= eng[top][1:])
        assert eng[top[0]] == eng.max()
    m = gt.rank_metrics(scores, np.stack([w.truth for w in wins]))
    assert all(0.0 <= v <= 1.0 for v in m.values())
