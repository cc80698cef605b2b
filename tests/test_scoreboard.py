"""The scoreboard (benchmarks/reports/scoreboard.py) and the README tables generated from it.

The committed ``benchmarks/results/scoreboard.json`` must load under the schema of docs/PROTOCOL.md,
agree with the result files it was converted from, and every README table between
``<!-- scoreboard:NAME -->`` markers must equal what ``python -m umask.bench.reports.readme`` writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from umask.bench.reports import readme, scoreboard
from umask.bench.reports.scoreboard import Row, load, upsert
from umask.runtime.core.errors import DataFormatError, InputError

ROOT = Path(__file__).resolve().parents[1]


def _row(**kw) -> Row:
    base = dict(protocol="B1", dataset="sim seed0 3 users", data="synthetic", model="umask", family="umask",
                kind="ours", artifact="onnx-int8-qdq", metric="rmse_all/traffic", value=0.07, better="lower",
                n_windows=12, seeds=(0, 1, 2), spread=0.001, command="umask eval", commit="abc1234",
                date="2026-12-05")
    return Row(**{**base, **kw})


# -- the committed file --------------------------------------------------------------------------

def test_committed_scoreboard_follows_the_schema() -> None:
    doc = json.loads(scoreboard.DEFAULT_PATH.read_text())
    assert doc["schema"] == 2 and isinstance(doc["rows"], list)
    rows = load()
    assert len(rows) == len(doc["rows"]) > 0
    required = {"protocol", "dataset", "data", "model", "family", "kind", "artifact", "metric", "value",
                "better", "n_windows", "seeds", "spread", "command", "commit", "date"}
    for d in doc["rows"]:
        assert required <= set(d), sorted(required - set(d))
    assert {r.data for r in rows} == {"real", "synthetic"}
    # every row's source file is committed next to it, and its commit exists in this repository
    for src in {r.source for r in rows}:
        assert src and (ROOT / src).is_file(), src


def test_committed_rows_match_their_result_files() -> None:
    """Nothing in the scoreboard drifted from the result files it was converted from."""
    by_key = {r.key: r for r in load()}
    converted = scoreboard.convert()
    assert converted
    for r in converted:
        assert r.key in by_key, f"not in scoreboard.json (run --convert): {r.key}"
        assert math.isclose(by_key[r.key].value, r.value, rel_tol=1e-12), r.key


def test_v1_per_user_figures_are_named_as_diagnostics() -> None:
    rows = [r for r in load() if r.protocol.startswith("B") and r.source and "user_" in r.source
            and "/v2_" not in r.source]
    assert rows
    assert all("v1" in r.dataset for r in rows)
    v2 = [r for r in load() if r.source and "/v2_" in r.source]
    assert v2 and not any("v1" in r.dataset or r.metric.startswith("active_mae") for r in v2)
    # synthetic headline rows carry 3 seeds and a spread; a single-seed file must say so in its notes
    assert all((r.spread is not None and len(r.seeds) >= 3) or (len(r.seeds) == 1 and "1 seed" in (r.notes or ""))
               for r in v2 if r.data == "synthetic")
    assert any(r.metric.startswith("active_mae/") for r in rows)
    assert not any(r.metric.startswith("mae/") for r in rows)   # the v1 name is not reused unqualified


def test_old_module_paths_are_rewritten() -> None:
    assert scoreboard.current_command("python -m umask.bench.milan_eval --out x") == \
        "python -m umask.bench.accuracy.grid --out x"
    assert scoreboard.current_command("python -m umask.bench.latency --quick") == \
        "python -m umask.bench.latency.harness --quick"
    # already current: unchanged (no double rewrite)
    assert scoreboard.current_command("python -m umask.bench.latency.harness") == "python -m umask.bench.latency.harness"
    for r in load():
        for old in scoreboard.MODULE_RENAMES:
            assert f"-m {old} " not in r.command + " ", (old, r.command[:80])


def test_script_is_cited_only_when_it_runs_the_exact_command(tmp_path: Path) -> None:
    (tmp_path / "a.sh").write_text("#!/bin/sh\nOMP_NUM_THREADS=1 .venv/bin/python -m umask.bench.x \\\n --n 3 \\\n --out o.json\n")
    assert scoreboard.script_for("python -m umask.bench.x --n 3 --out o.json", tmp_path) == "./scripts/a.sh"
    assert scoreboard.script_for("python -m umask.bench.x --n 4 --out o.json", tmp_path) is None


# -- README tables ---------------------------------------------------------------------------------

def test_every_readme_table_is_generated_from_the_scoreboard() -> None:
    text = readme.README.read_text()
    found = readme.blocks(text)
    assert set(found) == set(readme.TABLES), "README markers and readme.TABLES differ"
    rows = load()
    for name, body in found.items():
        assert body == readme.table_markdown(readme.TABLES[name], rows), \
            f"README table {name!r} is stale: run python -m umask.bench.reports.readme"


def test_a_stale_readme_table_is_caught(tmp_path: Path) -> None:
    rows = load()
    text = readme.README.read_text()
    new = readme.rewrite(text, rows)
    assert new == text
    # change one figure of the scoreboard: the regenerated README differs exactly in that table
    milan = next(r for r in rows if r.model == "arima" and r.protocol == "A1" and r.metric == "nmae")
    changed = [dataclasses.replace(r, value=r.value + 0.5) if r is milan else r for r in rows]
    old_b, new_b = readme.blocks(text), readme.blocks(readme.rewrite(text, changed))
    stale = [n for n in new_b if new_b[n] != old_b[n]]
    assert "milan" in stale and set(stale) <= {"milan", "milan_v2"}     # the tables that show ARIMA on A1
    sb, md = tmp_path / "scoreboard.json", tmp_path / "README.md"
    upsert(changed, sb)
    md.write_text(text)
    assert readme.main(["--check", "--readme", str(md), "--scoreboard", str(sb)]) == 1
    assert readme.main(["--readme", str(md), "--scoreboard", str(sb)]) == 0
    assert readme.main(["--check", "--readme", str(md), "--scoreboard", str(sb)]) == 0
    assert f"{milan.value + 0.5:.3f}" in md.read_text()


def test_auto_table_lists_every_model_of_its_keys_by_kind() -> None:
    base = dict(protocol="C", dataset="taobao 814 users, leave-one-out", data="real", metric="recall@10",
                better="higher", n_windows=814, seeds=(0,), spread=None, command="umask eval C", commit="abc1234",
                date="2026-12-06", source="benchmarks/results/v2_x.json")
    rows = [Row(model="zz_ours", family="fatsmb", kind="ours", artifact="torch", value=0.2, **base),
            Row(model="popularity", family=None, kind="baseline", artifact="numpy", value=0.1, **base),
            Row(model="zz_ours", family="fatsmb", kind="ours", artifact="onnx-int8-qdq", value=0.19, **base),
            Row(model="other_file", family=None, kind="baseline", artifact="numpy", value=0.3,
                **{**base, "source": "benchmarks/results/v2_y.json"})]
    t = readme.AutoTable("c", "cap", (readme.Col("R@10", "C", base["dataset"], ("recall@10",)),),
                         sources=("v2_x.json",))
    md = readme.table_markdown(t, rows)
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert [ln.split(" | ")[0] for ln in lines] == ["| popularity (numpy)", "| zz_ours (onnx-int8-qdq), ours",
                                                     "| zz_ours (torch), ours"]
    assert "**0.200**" in md and "other_file" not in md
    with pytest.raises(InputError, match="no scoreboard row"):
        readme.table_markdown(readme.AutoTable("d", "cap", (readme.Col("x", "D", "nothing", ("ndcg@5",)),)), rows)


def test_an_oracle_row_is_never_bold_and_only_where_its_file_is_named() -> None:
    base = dict(protocol="B2", dataset="sim", data="synthetic", metric="rmse_all/traffic", better="lower",
                n_windows=150, seeds=(0, 1, 2), spread=0.001, command="x", commit="abc1234", date="2026-12-06")
    rows = [Row(model="blend", family=None, kind="baseline", artifact="numpy", value=0.080,
                source="benchmarks/results/v2_b.json", **base),
            Row(model="umask", family="umask", kind="ours", artifact="torch", value=0.079,
                source="benchmarks/results/v2_b.json", **base),
            Row(model="param_oracle", family=None, kind="oracle", artifact="numpy", value=0.071,
                source="benchmarks/results/v2_o.json", **base)]
    col = (readme.Col("B2", "B2", "sim", ("rmse_all/traffic",)),)
    md = readme.table_markdown(readme.AutoTable("o", "cap", col, sources=("v2_b.json", "v2_o.json")), rows)
    assert "param_oracle (numpy), oracle | 0.071" in md and "**0.079**" in md and "**0.071**" not in md
    assert "param_oracle" not in readme.table_markdown(readme.AutoTable("p", "cap", col), rows)   # not opted in
    # a column may name another label of the same windows: the cell falls back to it, and it competes for bold
    other = [dataclasses.replace(rows[0], dataset="sim, same windows", value=0.078)] + rows[1:]
    same = (readme.Col("B2", "B2", "sim", ("rmse_all/traffic",), same_as=("sim, same windows",)),)
    md = readme.table_markdown(readme.AutoTable("q", "cap", same, sources=("v2_b.json",)), other)
    assert "| blend (numpy) | **0.078** |" in md and "| umask (torch), ours | 0.079 |" in md


def test_shared_rows_agree_to_the_written_precision() -> None:
    assert scoreboard.same_figure(0.9585935132455388, 0.958594)      # one file rounds to 6 decimals
    assert not scoreboard.same_figure(0.9585935132455388, 0.958596)
    assert not scoreboard.same_figure(0.41, 0.42)
    assert scoreboard.same_figure(1e-20, 1.0000000001e-20)


def test_unknown_table_marker_is_refused() -> None:
    with pytest.raises(DataFormatError, match="unknown scoreboard table"):
        readme.rewrite("<!-- scoreboard:nope -->\n<!-- /scoreboard:nope -->\n", [])


# -- validation and upsert -------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("protocol", "B5"), ("kind", "competitor"), ("better", "smaller"),
                                         ("data", "simulated"), ("metric", "rmse/everything"),
                                         ("n_windows", 0), ("commit", "not-a-hash"), ("date", "05/12/2026"),
                                         ("value", float("nan")), ("spread", -1.0), ("family", None)])
def test_invalid_fields_are_refused(field: str, value) -> None:
    with pytest.raises(InputError, match=field):
        _row(**{field: value})


def test_baseline_has_no_family() -> None:
    with pytest.raises(InputError, match="family"):
        _row(kind="baseline", family="umask")
    assert _row(kind="baseline", family=None).family is None


def test_upsert_replaces_by_key_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "sb.json"
    a = _row()
    b = _row(metric="rmse_all/app", value=0.02)
    upsert([a, b], path)
    assert [r.value for r in load(path)] == [0.07, 0.02]
    # another runner writes its own rows: a new protocol, and a new value for one existing key
    c = _row(protocol="A1", dataset="milan", data="real", metric="nmae", value=0.4)
    upsert([dataclasses.replace(a, value=0.06), c], path)
    got = load(path)
    assert [(r.metric, r.value) for r in got] == [("rmse_all/traffic", 0.06), ("rmse_all/app", 0.02), ("nmae", 0.4)]
    assert json.loads(path.read_text())["schema"] == 2
    assert not list(tmp_path.glob("*.tmp"))          # the atomic write leaves no temp file behind
    with pytest.raises(InputError, match="twice"):
        upsert([a, a], path)


def test_load_refuses_a_bad_file(tmp_path: Path) -> None:
    p = tmp_path / "sb.json"
    p.write_text(json.dumps({"schema": 1, "rows": []}))
    with pytest.raises(DataFormatError, match="schema"):
        load(p)
    p.write_text(json.dumps({"schema": 2, "rows": [{**_row().to_json(), "kind": "rival"}]}))
    with pytest.raises(DataFormatError, match=r"rows\[0\].*kind"):
        load(p)
    p.write_text(json.dumps({"schema": 2, "rows": [_row().to_json(), _row().to_json()]}))
    with pytest.raises(DataFormatError, match="duplicate"):
        load(p)
    p.write_text(json.dumps({"schema": 2, "rows": [{**_row().to_json(), "colour": "red"}]}))
    with pytest.raises(DataFormatError, match="unknown field"):
        load(p)


def test_convert_drops_rows_whose_result_file_is_gone(tmp_path: Path) -> None:
    """A withdrawn result file takes its rows out of the scoreboard on the next --convert; a row another runner
    wrote from a file that still exists stays."""
    path = tmp_path / "sb.json"
    gone = _row(source="benchmarks/results/v2_withdrawn_for_this_test.json", metric="rmse_all/app")
    here = _row(source="tests/test_scoreboard.py", dataset="kept by this test")     # exists, not a result file
    upsert([gone, here], path)
    assert scoreboard.main(["--convert", "--path", str(path)]) == 0
    got = load(path)
    assert not [r for r in got if r.source == gone.source]
    assert [r for r in got if r.dataset == "kept by this test"] and len(got) > 2
