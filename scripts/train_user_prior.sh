#!/usr/bin/env bash
# U-MASK with the deterministic "blend" prior (UMaskConfig.prior = "blend"; issue "U-MASK that wins"):
# the DiT gets 0.5 x last available value + 0.5 x the user's slot-of-day mean of the eligible history
# as extra input channels and learns the residual on top of it (train/models/umask/model.py "Prior").
# v2 recipe (t_power 2, data_scale none, scripts/train_user_v2.sh), small config, 50 SYNTHETIC users
# of simulator seed 0 (the v2 baseline population), one torch thread, in the background with resume
# (run it again to continue), cut at --max-minutes of training time (resumed time included).
#   scripts/train_user_prior.sh [MAX_MINUTES [STEPS]]   log: artifacts/train/logs/umask_prior_blend.log
#   scripts/train_user_prior.sh eval [CKPT] [TASKS] [USERS]
#       protocol-B test-day rows of the checkpoint (default ckpt/latest; B1,B2,B3,B4; all 50 users) next to
#       every v2 baseline on the same windows (seed-0 population) -> benchmarks/results/v2_user_umask_prior.json
#       in the v2_user_baselines.json shape (user_v2.aggregate), with a window-bootstrap paired comparison
#       against the blend in meta. The harness (user_umask.UMaskPredictor) builds no prior, so this wrapper
#       adds data.window_prior to each model batch; "umask_prior_blend" is the x0 prediction at t = N-1
#       averaged over 2 noise draws (UMask.complete(point="first_x0")), "umask_prior_blend_sampled" the mean
#       of 2 DDIM samples (10 steps; B2-B4 only: CPU time), "prior_blend_only" the prior by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=umask_prior_blend
if [[ "${1:-}" == "eval" ]]; then
    CKPT=${2:-artifacts/train/$NAME/ckpt/latest}
    TASKS=${3:-B1,B2,B3,B4}
    USERS=${4:-50}
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} exec .venv/bin/python - "$CKPT" "$TASKS" "$USERS" "$0 $*" <<'EOF'
import datetime as dt, functools, json, logging, shutil, sys, time
from pathlib import Path
import numpy as np, torch
from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_umask as uu
from umask.bench.accuracy.user_scoring import error_sums
from umask.bench.accuracy.user_v2 import GROUPS, _atomic_json, _git_commit, aggregate
from umask.train.models.umask.data import window_prior
from umask.train.models.umask.dit import TASKS as MODEL_TASKS

ckpt_arg, tasks, n_eval, command = sys.argv[1], tuple(sys.argv[2].split(",")), int(sys.argv[3]), sys.argv[4]
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
torch.set_num_threads(1)
t_start = time.perf_counter()
pop_full = ue.simulated_population(50, 0)
pop = uu.subset_population(pop_full, n_eval)

def with_prior(pred, point):
    """pred with data.window_prior added to each model batch (and complete(point=...))."""
    orig = pred.model_batch
    def model_batch(batch):
        mb = orig(batch)
        x0, av = mb["x0"].numpy(), mb["avail"].numpy()
        task = MODEL_TASKS.index(uu.TASK_OF[batch.task])
        pr = np.stack([window_prior(pop.features[int(u)].tensor, int(s), x0[i], av[i], task, pred.window.context)
                       * pop.features[int(u)].tensor.channels.present[:, None, None, None]
                       for i, (u, s) in enumerate(zip(batch.users, batch.context_starts))])
        mb["prior"] = torch.from_numpy(pr)
        return mb
    pred.model_batch = model_batch
    pred.model.complete = functools.partial(type(pred.model).complete, pred.model, point=point)
    return pred

p_x0 = with_prior(uu.umask_predictor(ckpt_arg, steps=10, n_samples=2, seed=0), "first_x0")
p_mean = with_prior(uu.umask_predictor(ckpt_arg, steps=10, n_samples=2, seed=0), "mean")

def sampled(view):
    """The sampled mean (20 DiT calls a batch, ~2 s each on one CPU thread): B2-B4 only (B1 has 24x the windows)."""
    if view.task == "B1":
        raise NotImplementedError("sampled mean not run on B1 (CPU time); see umask_prior_blend (first x0)")
    return p_mean(view)
if p_mean.model.cfg.prior != "blend":
    raise SystemExit(f"{ckpt_arg}: not a prior='blend' checkpoint")
if not uu.population_matches(pop_full, p_mean.config):
    raise SystemExit("the seed-0 50-user population is not the checkpoint's training population")
info_mean = {**p_mean.info(), "point_forecast": "mean of 2 DDIM samples (10 steps, eta 0); B2-B4 only", "prior": "blend"}
info_x0 = {**p_x0.info(), "point_forecast": "x0 prediction at the first sampler step (t = N-1), mean over 2 noise draws",
           "prior": "blend"}

def prior_only(view):
    """The deterministic prior alone (what an untrained prior model outputs), clipped as U-MASK's output."""
    pr = p_mean.model_batch(view)["prior"].numpy()[:, :, view.target_slice]
    pr = np.maximum(pr, 0.0)
    loc = view.channels.location_index
    pr[:, loc] = np.minimum(pr[:, loc], 1.0)
    return np.ascontiguousarray(np.where(view.avail, view.x_context, pr) if view.target_offset == 0 else pr, np.float32)

PRIOR_ONLY = ("data.window_prior alone (0.5 x last available value + 0.5 x slot-of-day mean of the history "
              "before the window plus the window's available entries; cold start: no earlier history) = the "
              "output of an untrained prior model")
preds = {}            # (task, users, window_index) -> model -> prediction, for the paired comparison
def recorded(name, fn):
    def call(view):
        out = fn(view)
        preds.setdefault((view.task, tuple(view.users.tolist()), tuple(view.window_index.tolist())), {})[name] = out
        return out
    return call

models = dict(ue.v2_baseline_models(pop))
models["blend"] = recorded("blend", models["blend"])
models["umask_prior_blend"] = recorded("umask_prior_blend", p_x0)
models["umask_prior_blend_sampled"] = recorded("umask_prior_blend_sampled", sampled)
models["prior_blend_only"] = recorded("prior_blend_only", prior_only)
rows = ue.evaluate_population(pop, models, split="test", tasks=tasks, command=command,
                              model_info={"umask_prior_blend": info_x0, "umask_prior_blend_sampled": info_mean,
                                          "prior_blend_only": {"what": PRIOR_ONLY}})

# per-window paired comparison against the blend: all-entry RMSE per group, window bootstrap
rng = np.random.default_rng(0)
paired = {}
for task in tasks:
    ms = [m for m in ("umask_prior_blend", "umask_prior_blend_sampled", "prior_blend_only")
          if m in next(iter(v for k, v in preds.items() if k[0] == task))]
    sse = {m: {g: [] for g in GROUPS} for m in ["blend", *ms]}
    cnt = {g: [] for g in GROUPS}
    for batch in ue.iter_batches(pop, task, "test", 32):
        got = preds[(task, tuple(batch.users.tolist()), tuple(batch.window_index.tolist()))]
        for i in range(batch.n):
            sl = slice(i, i + 1)
            for m in sse:
                es = error_sums(got[m][sl], batch.truth[sl], batch.eval_mask[sl], batch.channels)
                for g in GROUPS:
                    sse[m][g].append(es[g]["sse"])
            for g in GROUPS:
                cnt[g].append(es[g]["n"])
    res = {}
    for m in ms:
        res[m] = {}
        for g in GROUPS:
            a, b, n = np.array(sse[m][g]), np.array(sse["blend"][g]), np.array(cnt[g])
            rm = lambda x, idx: float(np.sqrt(x[idx].sum() / max(n[idx].sum(), 1)))
            allw = np.arange(len(n))
            d = rm(a, allw) - rm(b, allw)
            boot = []
            for _ in range(2000):
                idx = rng.integers(0, len(n), len(n))
                boot.append(rm(a, idx) - rm(b, idx))
            pw_a, pw_b = np.sqrt(a / np.maximum(n, 1)), np.sqrt(b / np.maximum(n, 1))
            res[m][g] = {"rmse_model": round(rm(a, allw), 6), "rmse_blend": round(rm(b, allw), 6),
                         "diff": round(d, 6), "diff_rel": round(d / max(rm(b, allw), 1e-12), 4),
                         "diff_ci95": [round(float(np.percentile(boot, 2.5)), 6), round(float(np.percentile(boot, 97.5)), 6)],
                         "windows_model_better": int((pw_a < pw_b - 1e-12).sum()),
                         "windows_blend_better": int((pw_b < pw_a - 1e-12).sum()), "n_windows": int(len(n))}
    paired[task] = res

# learning curve: validation target loss per evaluation, next to the same loss of a FRESH model (= the prior)
from umask.train.common.loop import Dist
from umask.train.models.umask.trainer import TrainConfig, UserFamily, evaluate as val_loss
tr = p_mean.config["train"]
tcfg = TrainConfig(model=tr["model"], model_overrides=tr["model_overrides"], n_users=tr["n_users"],
                   sim_seed=tr["sim_seed"], batch_size=tr["batch_size"], eval_batches=tr["eval_batches"],
                   seed=tr["seed"], sbert_cache=tr.get("sbert_cache"))
fam = UserFamily(tcfg)
fam.setup(Dist(), torch.device("cpu"))
torch.manual_seed(tr["seed"])
fresh = val_loss(fam.build_model(), fam.val_ds, tcfg, torch.device("cpu"), Dist())
ck = Path(p_mean.checkpoint)
recs = [json.loads(l) for l in (ck.parent.parent / "metrics.jsonl").read_text().splitlines()]
val_curve = [{"step": r["step"], "val/target": round(r["val/target"], 7), "val/diff": round(r["val/diff"], 7)}
             for r in recs if "val/target" in r]
train_recs = [r for r in recs if "loss" in r and "val/target" not in r]
learning = {"val_target_fresh_model_equals_prior": round(fresh["val/target"], 7),
            "val_curve": val_curve, "checkpoint": str(ck), "checkpoint_step": p_mean.info()["training"]["checkpoint_step"],
            "train_records": len(train_recs), "last_train_record": train_recs[-1] if train_recs else None,
            "what": "val/target = eq. 19 per-window target x0 error on 48 fixed validation windows (day 6) at fixed "
                    "noise; the fresh model's value is the prior's own error (an untrained prior model outputs it)"}

dataset = f"sim {len(pop.users)} users seed 0, v2 B windows (paired with umask_prior_blend)"
out_rows = aggregate({0: rows}, dataset=dataset, data="synthetic", command=command)
curve_src = ck.parent.parent / "metrics.jsonl"
curve = Path("benchmarks/results/learning_curves/umask_prior_blend_metrics.jsonl")
curve.parent.mkdir(parents=True, exist_ok=True)
shutil.copyfile(curve_src, curve)
doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                "wall_seconds": round(time.perf_counter() - t_start, 1), "users_per_seed": len(pop.users), "seeds": [0],
                "population": "SYNTHETIC simulator, 50 users, seed 0 = the checkpoint's training users; scored on "
                              "their test day (day 7), never seen in training",
                "models": {"umask_prior_blend": info_x0, "umask_prior_blend_sampled": info_mean, "prior_blend_only": PRIOR_ONLY},
                "point_estimator": {"umask_prior_blend": info_x0["point_forecast"],
                                    "umask_prior_blend_sampled": info_mean["point_forecast"],
                                    "baselines": "their deterministic forecast"},
                "paired_vs_blend": {"what": "all-entry RMSE per group of the model minus the blend's on the same "
                                            "windows (diff < 0: the model is better); diff_ci95 = 2000-resample "
                                            "bootstrap over windows (percentile); windows_*_better counts per-window RMSE",
                                    **paired},
                "learning_curve": {"file": str(curve), **learning},
                "kind": "umask_prior_blend* are U-MASK ablations (prior variant); prior_blend_only is the prior by itself (a baseline-like reference); the rest are the v2 baselines"},
       "rows": out_rows}
_atomic_json(Path("benchmarks/results/v2_user_umask_prior.json"), doc)
logging.info("wrote benchmarks/results/v2_user_umask_prior.json (%d rows) in %.0f s", len(out_rows),
             doc["meta"]["wall_seconds"])
print(json.dumps(paired, indent=1))
EOF
fi
MAX_MINUTES=${1:-35}
STEPS=${2:-700}      # ~20 steps a minute on a shared 2-core CPU: the cosine schedule ends inside the time box
mkdir -p artifacts/train/logs
OMP_NUM_THREADS=1 nohup .venv/bin/python -m umask.train.models.umask.trainer \
    --config small --steps "$STEPS" --warmup 50 --eval-every 50 --eval-batches 6 --ckpt-every 50 \
    --n-users 50 --sim-seed 0 --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
    --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$NAME" \
    > "artifacts/train/logs/$NAME.log" 2>&1 &
echo "started $NAME (pid $!), log artifacts/train/logs/$NAME.log"
