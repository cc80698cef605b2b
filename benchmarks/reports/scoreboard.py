"""The scoreboard: every headline accuracy figure as one validated row of one JSON file.

    python -m umask.bench.reports.scoreboard --convert      # committed result files -> scoreboard.json
    python -m umask.bench.reports.scoreboard --check        # load + validate, print a count per protocol

``benchmarks/results/scoreboard.json`` follows the schema of ``docs/PROTOCOL.md`` (last section):
``{"schema": 2, "rows": [...]}``; one row names protocol, dataset, data (real | synthetic), model,
family, kind (ours | ablation | baseline | peer), artifact, metric (``<name>/<channel group>`` or the
name), value, better (lower | higher), n_windows, seeds, spread, command, commit, date, plus two
optional fields the project adds: ``source`` (the result file the figure was read from) and
``notes``. A row is identified by (protocol, dataset, model, artifact, metric): :func:`upsert`
replaces rows with the same key and keeps every other row, so each protocol runner writes its own
rows without touching the others'. Writes are atomic (temp file, fsync, rename) under a lock file.

``--convert`` reads TODAY's committed result files (PROTOCOL v1 figures; see :data:`SOURCES`) and
takes every headline figure out of them. Nothing is recomputed and no v2 figure is invented:

* Milan A1 / A2: ``nmae``, ``nrmse`` (per-cell z-score) and ``mae_raw``, ``rmse_raw``.
* Per-user B1-B4 (v1 windows: B1 at target hours 2/8/14/20 where the file says so, v1 B3 cut):
  per channel group ``active_mae/<group>`` (a *diagnostic* in v2, named so), ``mae_all/<group>``
  and ``rmse_all/<group>``; B3 also ``recall@k`` / ``ndcg@k`` / ``mrr@k`` per domain.
* The main job (``main_job_summary.json``): the on-device request per exported precision on the REAL
  sample: ``mae_all``, ``active_mae`` and ``request_p50_ms``, next to last value.

Result files older than the restructure (0eaef45) record module paths of the old layout; the
converter rewrites those module names to the current ones (:data:`MODULE_RENAMES`; the arguments are
unchanged), so every row's command runs today. ``commit`` and ``date`` are those of the last commit
that changed the result file (``git log -1``), unless its meta records a run commit and date.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import re
import shlex
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from umask.runtime.core.errors import DataFormatError, InputError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_PATH = RESULTS / "scoreboard.json"
SCHEMA = 2

PROTOCOLS = ("A1", "A2", "A1-zeroshot", "A2-zeroshot", "B1", "B2", "B3", "B4", "C", "D")
KINDS = ("ours", "ablation", "baseline", "peer", "oracle")   # oracle: sees what no model can (a floor, never a rival)
BETTER = ("lower", "higher")
DATA = ("real", "synthetic")
CHANNEL_GROUPS = ("traffic", "app", "location")
KEY_FIELDS = ("protocol", "dataset", "model", "artifact", "metric")

_METRIC_RE = re.compile(r"^[a-z][a-z0-9_@.\-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}(\+dirty)?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclasses.dataclass(frozen=True)
class Row:
    """One headline figure. Construction validates every field and raises :class:`InputError`."""

    protocol: str
    dataset: str
    data: str
    model: str
    family: str | None
    kind: str
    artifact: str
    metric: str
    value: float
    better: str
    n_windows: int
    seeds: tuple[int, ...]
    spread: float | None
    command: str
    commit: str
    date: str
    source: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InputError:
            return InputError(f"scoreboard row {self.model!r} {self.metric!r}: {field}: {why}")

        if self.protocol not in PROTOCOLS:
            raise bad("protocol", f"{self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.kind not in KINDS:
            raise bad("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if self.better not in BETTER:
            raise bad("better", f"{self.better!r} is not one of {', '.join(BETTER)}")
        if self.data not in DATA:
            raise bad("data", f"{self.data!r} is not one of {', '.join(DATA)}")
        for name in ("dataset", "model", "artifact", "command"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise bad(name, "must be a non-empty string")
        if self.kind in ("ours", "ablation"):
            if not isinstance(self.family, str) or not self.family:
                raise bad("family", f"kind {self.kind} needs the project's family name")
        elif self.family is not None:
            raise bad("family", f"must be null for kind {self.kind}, got {self.family!r}")
        name, _, group = self.metric.partition("/")
        if not _METRIC_RE.match(name):
            raise bad("metric", f"{self.metric!r}: the name must be lower-case [a-z0-9_@.-]")
        if "/" in self.metric and group not in CHANNEL_GROUPS:
            raise bad("metric", f"{self.metric!r}: channel group must be one of {', '.join(CHANNEL_GROUPS)}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise bad("value", f"{self.value!r} is not a finite number")
        if isinstance(self.n_windows, bool) or not isinstance(self.n_windows, int) or self.n_windows < 1:
            raise bad("n_windows", f"{self.n_windows!r} is not a positive integer")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise bad("seeds", f"{self.seeds!r} must be a list of integers")
        if self.spread is not None and (not isinstance(self.spread, (int, float)) or not self.spread >= 0):
            raise bad("spread", f"{self.spread!r} must be null or a number >= 0")
        if not _COMMIT_RE.match(self.commit):
            raise bad("commit", f"{self.commit!r} is not a git commit hash")
        if not _DATE_RE.match(self.date):
            raise bad("date", f"{self.date!r} is not YYYY-MM-DD")

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.protocol, self.dataset, self.model, self.artifact, self.metric)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        for opt in ("source", "notes"):
            if d[opt] is None:
                del d[opt]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Row:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise InputError(f"scoreboard row: unknown field(s) {', '.join(unknown)}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise InputError(f"scoreboard row: missing field(s) {', '.join(missing)}")
        if not isinstance(d["seeds"], list):
            raise InputError(f"scoreboard row: seeds: {d['seeds']!r} must be a list of integers")
        return cls(**{**d, "seeds": tuple(d["seeds"])})


def load(path: str | Path = DEFAULT_PATH) -> list[Row]:
    """Every row of the scoreboard, validated. A missing file is an empty scoreboard."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"not JSON: {e.msg}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("rows"), list):
        raise DataFormatError(path, None, f'expected {{"schema": {SCHEMA}, "rows": [...]}}')
    rows, seen = [], set()
    for i, d in enumerate(doc["rows"]):
        try:
            r = Row.from_json(d)
        except (InputError, TypeError) as e:
            raise DataFormatError(path, None, f"rows[{i}]: {e}") from None
        if r.key in seen:
            raise DataFormatError(path, None, f"rows[{i}]: duplicate key {r.key}")
        seen.add(r.key)
        rows.append(r)
    return rows


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on the scoreboard's folder (flock on the directory: no lock file to clean up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write(path: Path, rows: Sequence[Row]) -> None:
    body = ",\n".join(json.dumps(r.to_json(), ensure_ascii=False) for r in rows)
    text = f'{{"schema": {SCHEMA},\n "rows": [\n{body}\n]}}\n'
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def upsert(rows: Iterable[Row], path: str | Path = DEFAULT_PATH) -> list[Row]:
    """Insert ``rows`` into the scoreboard at ``path``, replacing rows with the same key.

    Rows already there keep their place; new keys are appended in the order given. Two rows with
    one key in ``rows`` is an error. Returns the scoreboard as written."""
    path = Path(path)
    new = list(rows)
    for r in new:
        if not isinstance(r, Row):
            raise InputError(f"upsert: expected Row, got {type(r).__name__}")
    dup = [k for k, n in Counter(r.key for r in new).items() if n > 1]
    if dup:
        raise InputError(f"upsert: key given twice: {dup[0]}")
    with _locked(path):
        old = load(path)
        by_key = {r.key: r for r in new}
        out = [by_key.pop(r.key, r) for r in old]
        out += [r for r in new if r.key in by_key]
        _write(path, out)
    log.info("scoreboard %s: %d rows (%d given)", path, len(out), len(new))
    return out


# --------------------------------------------------------------------------------------------------
# Converter: today's committed result files -> rows


# Old module path (recorded in pre-restructure result files) -> current module path.
MODULE_RENAMES = {
    "umask.bench.milan_eval": "umask.bench.accuracy.grid",
    "umask.bench.milan_umask_eval": "umask.bench.accuracy.grid_umask",
    "umask.bench.arima": "umask.bench.accuracy.grid_peers arima",
    "umask.bench.patchtst": "umask.bench.accuracy.grid_peers patchtst",
    "umask.bench.csdi": "umask.bench.accuracy.grid_peers csdi",
    "umask.bench.user_eval": "umask.bench.accuracy.user",
    "umask.bench.umask_eval": "umask.bench.accuracy.user_umask",
    "umask.bench.user_peers": "umask.bench.accuracy.user_peers",
    "umask.bench.latency": "umask.bench.latency.harness",
    "umask.bench.steps_sweep": "umask.bench.latency.steps_sweep",
    "umask.bench.export_report": "umask.bench.reports.export",
    "umask.bench.data_report": "umask.bench.reports.data",
}

# Read in this order; where two files hold the same key with the same value, the first names it.
SOURCES = ("milan_baselines.json", "milan_arima.json", "milan_patchtst.json", "milan_csdi.json",
           "milan_umask.json", "user_baselines.json", "user_umask.json", "user_peers.json",
           "uscope_downstream.json", "main_job_summary.json", "v2_user_baselines.json", "uscope_llm_trained_seeds.json")
# files with rows in the v2 shape that score the v1 windows (not named v2_*: the v2 files hold v2-protocol figures)
V2_SHAPED = ("uscope_llm_trained_seeds.json",)

BASELINES = {"all_zero", "last_value", "historical_average", "seasonal_naive", "linear_interpolation",
             "context_mean", "arima", "blend", "blend_tuned", "historical_average_all", "blend_tuned_all",
             "historical_average_smooth", "blend_smooth", "lightgbm",
             "nearest_observed", "lowrank_interpolation", "profile_level", "profile_median_level",
             "profile_lowrank_interpolation"}
PEERS = {"patchtst", "csdi"}
OURS = {"umask", "umask_demo_600steps", "umask_main_job"}
NUMPY_ABLATIONS = {"prior_blend_only"}          # an ablation that is not a network (the blend prior by itself)
USCOPE_MODELS = {"a_no_profile": "umask_s500_profile_none", "b_template": "umask_s500_profile_template",
                 "c_lora": "umask_s500_profile_lora", "d_lora_dpo": "umask_s500_profile_lora_dpo"}
V1_NOTE = ("PROTOCOL v1 figure; active_mae is a diagnostic in v2 (a constant 'always on' predictor wins it), "
           "v1 windows")


def current_command(cmd: str) -> str:
    """``cmd`` with old-layout module paths replaced by the current ones (longest name first)."""
    for old in sorted(MODULE_RENAMES, key=len, reverse=True):
        cmd = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w.])", MODULE_RENAMES[old], cmd)
    return cmd


def _python_m_tokens(cmd: str) -> list[str] | None:
    """The tokens from ``-m`` on of a ``[ENV=..] [.venv/bin/]python -m MODULE ARGS`` command line."""
    try:
        tok = shlex.split(cmd)
    except ValueError:
        return None
    return tok[tok.index("-m"):] if "-m" in tok else None


def script_for(cmd: str, scripts: Path = ROOT / "scripts") -> str | None:
    """``./scripts/X.sh`` when that script runs exactly ``cmd`` (same module, same arguments), else None.

    Some recorded commands are a page long; the script that runs them token for token is cited
    instead (the comparison is exact, so a script that drifted from the file is never cited)."""
    want = _python_m_tokens(cmd)
    if want is None:
        return None
    for sh in sorted(scripts.glob("*.sh")):
        text = sh.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "python -m" in line and _python_m_tokens(line.strip()) == want:
                return f"./scripts/{sh.name}"
    return None


def _command(cmd: str) -> str:
    cmd = current_command(cmd)
    return script_for(cmd) or cmd


def _git_commit_date(path: Path) -> tuple[str, str]:
    out = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=False).stdout.split()
    if len(out) != 2:
        raise DataFormatError(path, None, "not committed: the scoreboard cites the commit of each result file")
    return out[0], out[1]


def _seeds(seeds: Any) -> tuple[int, ...]:
    """Model seeds from a result row's ``seeds`` entry: int, list, {"train": i, "sampler": j} or 'n/a'."""
    m = seeds.get("model") if isinstance(seeds, dict) else seeds
    if isinstance(m, bool):
        return ()
    if isinstance(m, int):
        return (m,)
    if isinstance(m, list):
        return tuple(sorted({int(s) for s in m}))
    if isinstance(m, dict):
        return tuple(sorted({int(v) for v in m.values() if isinstance(v, int)}))
    return ()


def _kind(model: str) -> tuple[str, str | None]:
    if model in BASELINES:
        return "baseline", None
    if model in PEERS:
        return "peer", None
    return ("ours" if model in OURS else "ablation"), "umask"


def artifact_of(model: str) -> str:
    """The artifact a row of ``model`` names when its result file does not (baselines: their library)."""
    if model == "arima":
        return "statsmodels"
    if model == "lightgbm":
        return "lightgbm"
    if model in BASELINES or model in NUMPY_ABLATIONS:
        return "numpy"
    return "torch"


def _decimals(v: float) -> int:
    """Digits after the point of ``v`` as Python writes it (json keeps that repr)."""
    r = repr(float(v))
    if "e" in r or "." not in r:
        return 15
    return len(r.split(".")[1])


def same_figure(a: float, b: float) -> bool:
    """``a`` and ``b`` are the same figure to the precision the coarser of the two was written with
    (a runner that rounds to 6 decimals and one that keeps all agree on a shared baseline row)."""
    if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
        return True
    d = min(_decimals(a), _decimals(b))
    return d < 15 and abs(a - b) <= 0.5 * 10.0 ** -d + 1e-12


class _Collector:
    """Rows by key, in first-seen order; the same key again must carry the same figure (`same_figure`)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, ...], Row] = {}

    def add(self, row: Row) -> None:
        old = self.rows.get(row.key)
        if old is None:
            self.rows[row.key] = row
        elif not same_figure(old.value, row.value):
            raise InputError(f"two result files disagree on {row.key}: {old.value} ({old.source}) vs "
                             f"{row.value} ({row.source})")


def _milan_rows(src: Path, doc: list[dict[str, Any]], commit: str, date: str) -> Iterator[Row]:
    for r in doc:
        protocol = r["task"].split()[0]
        model = r["model"].split("@")[0]
        subset = r["window"].get("subset")
        dataset = "milan 5x5 internet, test split"
        if subset:
            dataset += ", CSDI window subset (A1 every 36th, A2 every 8th)"
        kind, family = _kind(model)
        notes = r.get("notes") or None
        if r.get("sampler"):
            notes = f"{r['sampler']}. {notes or ''}".strip()
        for metric, key in (("nmae", "normalized_mae"), ("nrmse", "normalized_rmse"),
                            ("mae_raw", "raw_mae"), ("rmse_raw", "raw_rmse")):
            if r["metrics"].get(key) is None:
                continue
            yield Row(protocol=protocol, dataset=dataset, data="real", model=model, family=family, kind=kind,
                      artifact=artifact_of(model), metric=metric, value=float(r["metrics"][key]),
                      better="lower", n_windows=int(r["n_windows"]), seeds=_seeds(r["seeds"]), spread=None,
                      command=_command(r["command"]), commit=commit, date=date,
                      source=f"benchmarks/results/{src.name}", notes=notes)


def _user_dataset(r: dict[str, Any]) -> tuple[str, str]:
    if not r["synthetic"]:
        return "tsinghua sample 6 users 1 day, in-day context (v1 B1-real)", "real"
    seed = r.get("seeds", {}).get("simulator", r.get("simulator", {}).get("seed"))
    subset = r["window"].get("subset") or ""
    hours = ", B1 hours 2/8/14/20" if "target hours" in subset else ""
    return f"sim seed{seed} {r['n_users']} users, v1 windows{hours}", "synthetic"


def _user_rows(src: Path, doc: list[dict[str, Any]], commit: str, date: str) -> Iterator[Row]:
    for r in doc:
        protocol = r["task_id"].split("-")[0]
        model = r["model"].split("@")[0]
        model = USCOPE_MODELS.get(model, model)
        dataset, data = _user_dataset(r)
        kind, family = _kind(model)
        notes = V1_NOTE + (f"; {r['point_forecast']}, {r['sampler']} {r['steps']} steps"
                           if r.get("point_forecast") else "")
        if r.get("profile_input"):
            notes += f"; profile: {r['profile_input']}"
        base = dict(protocol=protocol, dataset=dataset, data=data, model=model, family=family, kind=kind,
                    artifact=artifact_of(model), n_windows=int(r["n_windows"]), seeds=_seeds(r["seeds"]),
                    spread=None, command=_command(r["command"]), commit=commit, date=date,
                    source=f"benchmarks/results/{src.name}", notes=notes)
        for g in CHANNEL_GROUPS:
            m = r["metrics"].get(g, {})
            for name, key in (("active_mae", "active_mae"), ("mae_all", "mae"), ("rmse_all", "rmse")):
                if m.get(key) is not None:
                    yield Row(metric=f"{name}/{g}", value=float(m[key]), better="lower", **base)
        for domain, ranks in (r["metrics"].get("ranking") or {}).items():
            for name, v in ranks.items():
                if name.split("@")[0] in ("recall", "ndcg", "mrr") and v is not None:
                    yield Row(metric=f"{name}/{domain}", value=float(v), better="higher",
                              **{**base, "n_windows": int(ranks.get("n_users_ranked") or r["n_windows"])})


MAIN_JOB_MODEL = "umask_main_job"      # the main job's model row; which checkpoint served it is in the notes


def _main_job_rows(src: Path, doc: dict[str, Any], commit: str, date: str) -> Iterator[Row]:
    la = doc["latency_accuracy"]
    hours = "/".join(str(h) for h in la["hours"])
    dataset = f"tsinghua sample 6 users 1 day, requests at {hours} h (main job)"
    train = doc.get("train", {})
    checkpoint, source = train.get("checkpoint", ""), train.get("source", "trained by the main job")
    notes = (f"the main job's on-device request (runtime Session, short-term next hour); model {checkpoint} "
             f"({source}), trained on SYNTHETIC users, zero-shot on the REAL sample; point estimate = the "
             f"bundle's default (conditional mean); mae_all over all entries and channels, active_mae (v2 "
             f"diagnostic) over non-zero truth")
    for r in la["rows"]:
        base = dict(protocol="B1", dataset=dataset, data="real", n_windows=int(r["requests"]), seeds=(0,),
                    spread=None, command="./scripts/demo.sh", commit=commit, date=date,
                    source=f"benchmarks/results/{src.name}", notes=notes)
        art = f"onnx-{r['precision']}"
        ours = dict(model=MAIN_JOB_MODEL, family="umask", kind="ours", artifact=art)
        lv = dict(model="last_value", family=None, kind="baseline", artifact="numpy")
        for metric, key, who in (("mae_all", "mae", ours), ("active_mae", "active_mae", ours),
                                 ("request_p50_ms", "p50_ms", ours), ("mae_all", "last_value_mae", lv),
                                 ("active_mae", "last_value_active_mae", lv)):
            if r.get(key) is not None:
                yield Row(metric=metric, value=float(r[key]), better="lower", **{**base, **who})


def _v2_rows(src: Path, doc: dict[str, Any], commit: str, date: str) -> Iterator[Row]:
    """PROTOCOL v2 result files (``v2_*.json``, e.g. benchmarks/accuracy/user_v2.py): rows already in the
    scoreboard's shape (protocol, dataset, data, model, metric, value, spread, better, n_windows, seeds,
    command); kind, family and artifact follow the model name, commit and date the run's meta."""
    meta = doc.get("meta", {})
    commit = str(meta.get("commit", commit)).replace("+dirty", "") or commit
    date = meta.get("date", date)
    default_notes = meta.get("point_estimator") and (f"point estimator: {meta['point_estimator']}; "
                                                     f"spread: {meta.get('spread')}")
    for r in doc["rows"]:
        # a row may name its kind and family itself (the other families' files do); else the model name decides
        kind, family = (r["kind"], r.get("family")) if "kind" in r else _kind(r["model"])
        notes = r.get("notes") or meta.get("notes") or default_notes
        if len(r["seeds"]) == 1 and "1 seed" not in (notes or ""):
            notes = f"{notes}; 1 seed" if notes else "1 seed"     # a single-seed figure says so (PROTOCOL rule 6)
        yield Row(protocol=r["protocol"], dataset=r["dataset"], data=r["data"], model=r["model"], family=family,
                  kind=kind, artifact=r.get("artifact") or artifact_of(r["model"]), metric=r["metric"],
                  value=float(r["value"]), better=r["better"], n_windows=int(r["n_windows"]),
                  seeds=tuple(int(s) for s in r["seeds"]), spread=r.get("spread"), command=r["command"],
                  commit=commit, date=date, source=f"benchmarks/results/{src.name}", notes=notes)


def sources(results: Path = RESULTS) -> tuple[str, ...]:
    """`SOURCES`, then every other ``v2_*.json`` of ``results`` (sorted): a v2 runner's file joins the
    scoreboard by its name alone (rows in the shape `_v2_rows` reads)."""
    extra = sorted(p.name for p in results.glob("v2_*.json") if p.name not in SOURCES)
    return (*SOURCES, *extra)


def convert(results: Path = RESULTS, names: Sequence[str] | None = None) -> list[Row]:
    """Rows for every headline figure of the committed result files named in ``names`` (default:
    `sources(results)`)."""
    col = _Collector()
    for name in (sources(results) if names is None else names):
        src = results / name
        if not src.exists():
            log.warning("scoreboard: %s not found, skipped", src)
            continue
        doc = json.loads(src.read_text())
        commit, date = _git_commit_date(src)
        if name == "main_job_summary.json":
            gen = _main_job_rows(src, doc, commit, date)
        elif name.startswith("v2_") or name in V2_SHAPED:
            gen = _v2_rows(src, doc, commit, date)
        elif name.startswith("milan_"):
            gen = _milan_rows(src, doc, commit, date)
        else:
            gen = _user_rows(src, doc["rows"] if isinstance(doc, dict) else doc, commit, date)
        n = 0
        for row in gen:
            col.add(row)
            n += 1
        log.info("scoreboard: %s -> %d figures", name, n)
    return list(col.rows.values())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umask.bench.reports.scoreboard", description=__doc__.split("\n")[0])
    ap.add_argument("--convert", action="store_true", help="rebuild the scoreboard from the committed result files")
    ap.add_argument("--check", action="store_true", help="load and validate the scoreboard; print counts")
    ap.add_argument("--path", default=str(DEFAULT_PATH), help="scoreboard file (default: %(default)s)")
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = Path(ns.path)
    if ns.convert:
        rows = convert()
        ours = {f"benchmarks/results/{s}" for s in sources()}
        with _locked(path):
            # rows other runners wrote (not read from the converted files) stay, unless their result file is gone
            # (a withdrawn result must leave the scoreboard with its file)
            old = [r for r in load(path) if r.source not in ours and r.key not in {x.key for x in rows}]
            kept = [r for r in old if not r.source or (ROOT / r.source).is_file()]
            for src in sorted({r.source for r in old} - {r.source for r in kept}):
                log.warning("scoreboard: %s no longer exists; its rows are dropped", src)
            _write(path, rows + kept)
        log.info("scoreboard %s: %d converted rows, %d kept", path, len(rows), len(kept))
    if ns.check or not ns.convert:
        rows = load(path)
        counts = Counter((r.protocol, r.data) for r in rows)
        for (p, d), n in sorted(counts.items()):
            print(f"{p:<12} {d:<10} {n:>5} rows")
        print(f"{len(rows)} rows in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
