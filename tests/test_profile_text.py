"""U-SCOPE prompt x_u and template profile y_u, on the real 6-user sample first, then rule cases."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import read_llmapp_sample
from umask.runtime.core.featurize import ProfileStats, UserFeatures, featurize_population
from umask.runtime.families.umask.profile_text import (
    PROMPT_MAX_CHARS,
    SECTIONS,
    ProfileGenerator,
    ProfileSource,
    active_window,
    build_prompt,
    display_name,
    intent_phrase,
    normalize_text,
    pct,
    peak_window,
    profile_sections,
    profile_text,
    quiet_runs,
    template_profile,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tsinghua_app_usage"
SAMPLE = DATA / "app_usage_trace_sample_llmapp.csv.gz"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_llmapp_catalog(DATA)


@pytest.fixture(scope="module")
def pop(catalog: Catalog) -> dict[int, UserFeatures]:
    return featurize_population(read_llmapp_sample(SAMPLE), catalog)


@pytest.fixture(scope="module")
def truth() -> dict[int, dict[str, object]]:
    """Per user, straight from the CSV (no runtime code): busiest hour and top app category name."""
    with open(DATA / "llmapp_category.csv", newline="", encoding="utf-8") as fh:
        cat_name = {int(r["app_type_id"]): r["en"].strip() for r in csv.DictReader(fh)}
    hours: dict[int, Counter] = {}
    cats: dict[int, Counter] = {}
    with gzip.open(SAMPLE, "rt", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            u = int(r["user_id"])
            hours.setdefault(u, Counter())[int(r["time"][8:10])] += 1
            cats.setdefault(u, Counter())[cat_name[int(r["app_cate_id"])]] += 1
    out = {}
    for u in hours:
        h = min(hours[u].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        (c, nc), (_, nc2) = sorted(cats[u].items(), key=lambda kv: (-kv[1], kv[0]))[:2]
        out[u] = {"peak_hour": h, "top_category": c, "clear_lead": nc > nc2}
    return out


# -----------------------------------------------------------------------------
# Real users
# -----------------------------------------------------------------------------

def test_prompt_deterministic_and_within_budget(pop: dict[int, UserFeatures]) -> None:
    for u, f in pop.items():
        p = build_prompt(f.profile)
        assert p == build_prompt(f.profile)
        # the same statistics after a JSON round trip (NaN -> None -> NaN) give the same text
        back = ProfileStats.from_dict(json.loads(json.dumps(f.profile.to_dict())))
        assert build_prompt(back) == p and template_profile(back) == template_profile(f.profile)
        assert len(p) <= PROMPT_MAX_CHARS, (u, len(p))
        assert len(p) <= 600
        assert p.splitlines()[0].startswith("History: ") and p.splitlines()[-1].startswith("Regularity: ")
        assert "nan" not in p.lower() and "nan" not in template_profile(f.profile).lower()


def test_texts_name_true_top_category_and_peak_hour(pop: dict[int, UserFeatures], truth) -> None:
    assert sorted(pop) == sorted(truth) == [4, 5, 6, 7, 8, 9]
    for u, f in pop.items():
        t = truth[u]
        assert t["clear_lead"]
        p = build_prompt(f.profile)
        y = template_profile(f.profile)
        h, top = t["peak_hour"], t["top_category"]
        assert f"busiest hour {h:02d}h" in p, (u, p)
        assert f"Top apps: {top} " in p, (u, p)                       # listed first
        sec = profile_sections(f.profile)
        assert f"busiest at {h:02d}h" in sec["Routine"], (u, y)
        assert top in sec["App preferences"].split(",")[0], (u, y)     # first named category
        assert intent_phrase(top) in sec["Intent"].lower(), (u, y)


def test_different_users_get_different_texts(pop: dict[int, UserFeatures]) -> None:
    prompts = {build_prompt(f.profile) for f in pop.values()}
    profiles = {template_profile(f.profile) for f in pop.values()}
    assert len(prompts) == len(pop) and len(profiles) == len(pop)


def test_template_structure(pop: dict[int, UserFeatures]) -> None:
    for f in pop.values():
        y = template_profile(f.profile)
        lines = y.split("\n")
        assert [ln.split(":", 1)[0] for ln in lines] == list(SECTIONS)
        assert all(ln.endswith(".") and len(ln.split(": ", 1)[1]) > 5 for ln in lines)
        assert len(y) < 700
    # an example of the rule outcome on a real user (user 8: 59 % social, 29 % travel, evening peak)
    y8 = profile_sections(pop[8].profile)
    assert y8["Intent"] == "Social communication and travel services."
    assert y8["App preferences"].startswith("Led by Social Networking (59%), then Travel (29%)")
    assert "busiest at 18h" in y8["Routine"] and "weekdays only" in y8["Routine"]
    assert y8["Regularity"].startswith("Fairly regular, tentative (4 sessions)")


def test_names_override(pop: dict[int, UserFeatures]) -> None:
    st = pop[5].profile
    cats = [f"cat{k}" for k in range(len(st.category_names))]
    p = build_prompt(st, category_names=cats)
    top = int(np.argmax(st.C_u.sum(axis=1)))
    assert f"Top apps: cat{top} " in p
    with pytest.raises(InputError):
        build_prompt(st, category_names=cats[:-1])
    with pytest.raises(InputError):
        template_profile(st, place_names=["x"])


def test_prompt_budget_drops_detail(pop: dict[int, UserFeatures]) -> None:
    st = pop[7].profile
    full = build_prompt(st)
    short = build_prompt(st, max_chars=len(full) - 1)
    assert len(short) < len(full) and "busiest hour 08h" in short
    with pytest.raises(InputError):
        build_prompt(st, max_chars=50)


# -----------------------------------------------------------------------------
# Sources
# -----------------------------------------------------------------------------

def test_profile_source(pop: dict[int, UserFeatures]) -> None:
    st = pop[6].profile
    assert profile_text("none", st) is None and profile_text(ProfileSource.NONE) is None
    assert profile_text("template", st) == template_profile(st)
    assert profile_text("TEXT", text="  Likes   music.\n\n Evening user. ") == "Likes music.\nEvening user."
    assert profile_text("llm", st, text="Intent: chat.") == "Intent: chat."

    seen = []

    def fake_llm(prompt: str) -> str:
        seen.append(prompt)
        return "Intent: social communication.  "

    assert isinstance(fake_llm, ProfileGenerator)
    assert profile_text("llm", st, generator=fake_llm) == "Intent: social communication."
    assert seen == [build_prompt(st)]
    for bad in (lambda: profile_text("template"), lambda: profile_text("text", st),
                lambda: profile_text("llm", st), lambda: profile_text("text", text="   "),
                lambda: profile_text("gpt", st)):
        with pytest.raises(InputError):
            bad()
    assert normalize_text("a \t b\r\n c") == "a b\nc"


# -----------------------------------------------------------------------------
# Rules on constructed statistics
# -----------------------------------------------------------------------------

def _stats(hours: dict[int, int], cats: dict[int, int], *, weekday: list[int] | None = None,
           regularity: float = 0.8, n_sessions: int = 40, spd: float = 12.0, minutes: float = 3.0,
           day_sim: float = 0.9, cells: int = 1) -> ProfileStats:
    K, HW, P = 4, 16, 3
    pi = np.zeros(24)
    for h, n in hours.items():
        pi[h] = n
    C_u = np.zeros((K, HW), np.int64)
    for k, n in cats.items():
        for c in range(cells):
            C_u[k, c] = n // cells + (1 if c < n % cells else 0)
    C_place = np.zeros((K, P), np.int64)
    C_place[:, 0] = C_u.sum(axis=1)
    w = np.array(weekday if weekday is not None else [1, 1, 1, 1, 1, 1, 1], np.float64)
    n = int(sum(hours.values()))
    return ProfileStats(user=1, n_events=n, n_covered=int(C_u.sum()), n_active_days=10,
                        pi_hour=pi / pi.sum(), pi_weekday=w / w.sum(), C_u=C_u, C_place=C_place,
                        n_unknown_place=0, category_names=["Games", "Finance", "Photo&Video", "Weath1er"],
                        place_types=["Residence", "Office", "Park"], slot_place=["Residence"] * HW,
                        n_sessions=n_sessions, sessions_per_day=spd, mean_session_minutes=minutes,
                        session_start_entropy=1 - regularity, regularity=regularity, day_similarity=day_sim)


def test_template_rules_night_gamer() -> None:
    st = _stats({1: 50, 2: 30, 23: 20}, {0: 90, 3: 10}, weekday=[1, 1, 1, 1, 1, 4, 4], cells=1)
    s = profile_sections(st)
    assert s["Intent"] == "Mainly mobile gaming, also weather checks."
    assert s["Routine"] == "Night-heavy user, active 23-03h, busiest at 01h, weekend-leaning."
    assert s["App preferences"].startswith("Dominated by Games (90%), then Weath1er (10%)")
    assert s["Place tendencies"] == "Mostly around Residence places (100%); stays mostly in one area (100% of events)."
    assert s["Regularity"] == ("Highly regular; frequent short check-ins (12.0 a day, mean 3 min); "
                               "days look alike.")
    p = build_prompt(st)
    assert "peak 00-03h (80%)" in p and "busiest hour 01h (50%)" in p and "quiet 03-23h" in p


def test_template_rules_spread_user() -> None:
    hours = {h: 10 for h in range(7, 23)}
    st = _stats(hours, {0: 30, 1: 30, 2: 25, 3: 15}, regularity=0.2, n_sessions=3, spd=1.0, minutes=90.0,
                day_sim=0.3, cells=10)
    s = profile_sections(st)
    assert s["Intent"] == "Mobile gaming, finance and photo-video content."
    assert s["Routine"].startswith("Morning and afternoon user, active 07-23h, busiest at 07h, no night use")
    assert s["Routine"].endswith("even over the week.")
    assert "diverse (4 categories)" in s["App preferences"]
    assert "moves across many areas (10 cells)" in s["Place tendencies"]
    assert s["Regularity"] == "Irregular, tentative (3 sessions); few long sessions (1.0 a day, mean 90 min); days differ."


def test_helpers() -> None:
    pi = np.zeros(24)
    pi[[22, 23, 0, 1]] = [0.2, 0.3, 0.3, 0.2]
    assert peak_window(pi)[:2] == (22, 25) and abs(peak_window(pi)[2] - 0.8) < 1e-12
    assert quiet_runs(pi) == [(2, 22)]
    assert active_window(pi) == (22, 26)
    assert pct(0.004) == "<1%" and pct(0.005) == "1%" and pct(0.125) == "13%" and pct(0.0) == "0%"
    assert display_name("Social\\_Networking") == "Social Networking"
    assert intent_phrase("Weath1er") == "weather checks" and intent_phrase("Health&Fitness ") == "health tracking"
    assert intent_phrase("Robotics") == "robotics"


def test_runtime_module_imports_without_torch() -> None:
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "pandas", "scipy"):
            sys.modules[name] = None
        from umask.runtime.core.catalog import load_llmapp_catalog
        from umask.runtime.core.events import read_llmapp_sample
        from umask.runtime.core.featurize import featurize_population
        from umask.runtime.families.umask.profile_text import build_prompt, template_profile
        pop = featurize_population(read_llmapp_sample({str(SAMPLE)!r}), load_llmapp_catalog({str(DATA)!r}))
        print(len(build_prompt(pop[4].profile)), len(template_profile(pop[4].profile)))
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
