"""Tests of the Taobao UserBehavior loaders against the real sample in data/taobao_user_behavior/."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.errors import DataFormatError
from umask.train.data import taobao

DATA = Path(__file__).resolve().parents[1] / "data" / "taobao_user_behavior"
HEAD = DATA / "UserBehavior_head.csv.gz"
RETAIL = DATA / "retail.txt.gz"

EXPECTED_COUNTS = {"pv": 75_693, "cart": 4_494, "fav": 2_351, "buy": 1_749}


@pytest.fixture(scope="module")
def head() -> taobao.Interactions:
    return taobao.read_user_behavior(HEAD)


@pytest.fixture(scope="module")
def retail() -> taobao.Interactions:
    return taobao.read_retail(RETAIL)


@pytest.mark.parametrize("name", ["head", "retail"])
def test_counts_match_source(name: str, request: pytest.FixtureRequest) -> None:
    data: taobao.Interactions = request.getfixturevalue(name)
    assert len(data) == 84_287
    assert data.n_users == 814
    assert data.behavior_counts() == EXPECTED_COUNTS
    assert data.behavior.dtype == np.int8 and data.timestamp.dtype == np.int64
    assert data.skipped == {}


def test_head_has_categories_retail_does_not(head: taobao.Interactions, retail: taobao.Interactions) -> None:
    assert np.all(head.category >= 0)
    assert len(np.unique(head.category)) == 2_911
    assert len(np.unique(head.item)) == 55_233
    assert np.all(retail.category == taobao.UNKNOWN_CATEGORY)


def test_files_agree_row_for_row(head: taobao.Interactions, retail: taobao.Interactions) -> None:
    def rows(d: taobao.Interactions) -> Counter[tuple[int, int, int, int]]:
        return Counter(zip(d.user.tolist(), d.item.tolist(), d.behavior.tolist(), d.timestamp.tolist()))

    assert rows(head) == rows(retail)


def test_behavior_codes() -> None:
    assert taobao.BEHAVIORS == ("pv", "fav", "cart", "buy")
    assert [taobao.BEHAVIOR_CODE[b] for b in taobao.BEHAVIORS] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("1,2,3,pv\n", "field_count"),
        ("1,2,3,click,1511544070\n", "unknown_behavior"),
        ("1,x,3,pv,1511544070\n", "non_numeric"),
        ("1,2,3,pv,-5\n", "negative"),
    ],
)
def test_user_behavior_errors(tmp_path: Path, bad: str, reason: str) -> None:
    path = tmp_path / "ub.csv"
    good = "1,2,3,pv,1511544070\n"
    path.write_text(good + bad + good)
    with pytest.raises(DataFormatError) as err:
        taobao.read_user_behavior(path)
    assert err.value.line == 2 and f"{path}:2" in str(err.value)
    out = taobao.read_user_behavior(path, on_error="skip")
    assert len(out) == 2 and out.skipped == {reason: 1}


def test_retail_errors(tmp_path: Path) -> None:
    path = tmp_path / "retail.txt"
    path.write_text("1\t2\tpv\t100\n1,2,pv,100\n")  # comma-separated line in a tab file
    with pytest.raises(DataFormatError) as err:
        taobao.read_retail(path)
    assert err.value.line == 2
    path.write_text("1\t2\tbuy\t100\n\n")
    with pytest.raises(DataFormatError, match="empty line"):
        taobao.read_retail(path)
    out = taobao.read_retail(path, on_error="skip")
    assert len(out) == 1 and out.skipped == {"empty_line": 1} and out.category.tolist() == [-1]
