"""Training settings declared once: dataclass fields with a description, and the CLI generated from them.

Every setting is a dataclass field whose ``metadata`` carries its ``help`` text (in the style of
HF's ``HfArgumentParser``)::

    @dataclass
    class MyConfig(LoopConfig):
        width: int = field(default=64, metadata={"help": "hidden width"})

    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_args(parser, MyConfig)        # --width, plus every LoopConfig flag
    cfg = dataclass_from_args(MyConfig, parser.parse_args())

Mapping from a field to its flag (:func:`add_dataclass_args`):

* name ``foo_bar`` -> ``--foo-bar`` (``metadata["flag"]`` renames it, ``metadata["aliases"]`` adds
  more spellings, ``metadata["cli"] = False`` leaves the field off the command line);
* ``int`` / ``float`` / ``str`` -> typed; ``X | None`` -> typed, default None (``none_text``: the
  string that means None on the command line, e.g. ``''``);
* ``Literal[...]`` -> ``choices``;
* ``bool`` -> a switch: default False gives ``--foo``; default True gives ``--no-foo`` (help: ``metadata["help_off"]``
  when the field's help describes the "on" state, as a field re-declared with another default needs);
* ``tuple[int, ...]`` / ``tuple[float, float]`` -> one comma-separated value (``--patch 4,5,5``);
* ``dict[str, Any]`` -> a repeatable ``KEY=VALUE`` option (the value parsed as JSON when it is JSON);
* ``metadata["group"]`` names the argparse group of the option (help output sections).

:class:`LoopConfig` holds the settings of the shared training loop (train/common/loop.py); each
model family's config inherits it and adds its own fields. :func:`with_default` re-declares a
LoopConfig field with a family's default while keeping its description (declared once).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from umask.runtime.core.errors import InputError

T = TypeVar("T")

__all__ = ["HelpFormatter", "LoopConfig", "add_dataclass_args", "config_dict", "dataclass_from_args", "from_config_dict",
           "with_default"]


# ------------------------------------------------------------------------------------------------
# Field -> argparse option
# ------------------------------------------------------------------------------------------------
@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None`` / ``Optional[X]``, else (tp, False)."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _parse_key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def _tuple_parser(item_types: tuple[Any, ...], flag: str) -> Any:
    variadic = len(item_types) == 2 and item_types[1] is Ellipsis

    def parse(text: str) -> tuple[Any, ...]:
        parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
        if not variadic and len(parts) != len(item_types):
            raise argparse.ArgumentTypeError(f"{flag} takes {len(item_types)} comma-separated values, got {text!r}")
        kinds = [item_types[0]] * len(parts) if variadic else list(item_types)
        try:
            return tuple(k(p) for k, p in zip(kinds, parts, strict=True))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{flag}: {e}") from None

    parse.__name__ = "comma-separated values"
    return parse


def _none_or(kind: Any, none_text: str | None) -> Any:
    if none_text is None:
        return kind

    def parse(text: str) -> Any:
        return None if text == none_text else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _show(value: Any) -> Any:
    """How a default reads in --help."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return value


_METAVAR = {int: "N", float: "X", str: "TEXT"}


def _option(f: dataclasses.Field, tp: Any) -> tuple[list[str], dict[str, Any]]:
    """(option strings, add_argument keywords) for one field."""
    md = f.metadata
    flag = md.get("flag", "--" + f.name.replace("_", "-"))
    help_text = md.get("help", "")
    default = _default(f)
    tp, optional = _unwrap_optional(tp)
    origin = get_origin(tp)
    kw: dict[str, Any] = {"dest": f.name, "help": help_text}
    if tp is bool:
        if default:
            flag = md.get("flag", "--no-" + f.name.replace("_", "-"))
            kw.update(action="store_false", default=True, help=md.get("help_off", help_text))   # the flag turns it off
        else:
            kw.update(action="store_true", default=False)
        return [flag, *md.get("aliases", ())], kw
    if origin is Literal:
        choices = get_args(tp)
        kw.update(choices=choices, type=type(choices[0]), default=default)
    elif origin is tuple:
        items = get_args(tp)
        shown = [_METAVAR.get(items[0], "V"), "..."] if items[-1] is Ellipsis else [_METAVAR.get(t, "V") for t in items]
        kw.update(type=_tuple_parser(items, flag), default=default, metavar=md.get("metavar", ",".join(shown)))
    elif origin is dict or tp is dict:
        kw.update(action="append", type=_parse_key_value, default=None, metavar=md.get("metavar", "KEY=VALUE"))
        kw["help"] = f"{help_text}; repeatable"
    elif tp in (int, float, str):
        kw.update(type=_none_or(tp, md.get("none_text")), default=default)
        if tp is not str:
            kw["metavar"] = _METAVAR[tp]
    else:
        raise TypeError(f"{f.name}: no command-line form for type {tp!r}; set metadata cli=False")
    if "choices" in md:
        kw["choices"] = tuple(md["choices"])
    if "metavar" in md and "metavar" not in kw:
        kw["metavar"] = md["metavar"]
    if optional and "choices" in kw:
        kw["choices"] = (*kw["choices"], None)
    return [flag, *md.get("aliases", ())], kw


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default where it has one (tuples as ``a,b``; none shown for
    switches and None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (d is None or d is argparse.SUPPRESS or isinstance(d, bool) or "%(default)" in text
                or action.nargs == 0 or not action.option_strings):
            return text
        return f"{text} (default: {_show(d)})".replace("%", "%%")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a command-line option."""
    return [f for f in fields(cls) if f.metadata.get("cli", True) and f.init]


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, exclude: tuple[str, ...] = (),
                       groups: dict[str, argparse._ArgumentGroup] | None = None) -> dict[str, argparse._ArgumentGroup]:
    """Add one option per field of the dataclass ``cls`` (see the module doc); returns the groups by
    name (fields without ``metadata["group"]`` go to the parser itself), so callers can add their own
    options to the same sections."""
    groups = {} if groups is None else groups
    hints = _hints(cls)
    for f in cli_fields(cls):
        if f.name in exclude:
            continue
        names, kw = _option(f, hints[f.name])
        gname = f.metadata.get("group")
        target: Any = parser
        if gname is not None:
            if gname not in groups:
                groups[gname] = parser.add_argument_group(gname)
            target = groups[gname]
        target.add_argument(*names, **kw)
    return groups


def dataclass_from_args(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed options (fields absent from ``ns`` keep their defaults; dict fields
    from their ``KEY=VALUE`` list); ``overrides`` win over both."""
    kw: dict[str, Any] = {}
    hints = _hints(cls)
    for f in cli_fields(cls):
        if not hasattr(ns, f.name):
            continue
        v = getattr(ns, f.name)
        tp, _ = _unwrap_optional(hints[f.name])
        if (get_origin(tp) is dict or tp is dict) and not isinstance(v, dict):
            v = dict(v or ())
        kw[f.name] = v
    kw.update(overrides)
    return cls(**kw)


# ------------------------------------------------------------------------------------------------
# JSON round trip (config.json "train" section)
# ------------------------------------------------------------------------------------------------
def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as JSON-ready data (tuples as lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in fields(cfg)}


def from_config_dict(cls: type[T], d: dict[str, Any]) -> T:
    """``cls`` from :func:`config_dict` output; unknown keys (settings of older versions) are ignored,
    lists become tuples where the field is a tuple."""
    hints = _hints(cls)
    kw = {}
    for f in fields(cls):
        if f.name in d:
            v = d[f.name]
            tp, _ = _unwrap_optional(hints[f.name])
            kw[f.name] = tuple(v) if get_origin(tp) is tuple and isinstance(v, list) else v
    return cls(**kw)


def with_default(base: type, name: str, default: Any) -> Any:
    """A field re-declaring ``base``'s field ``name`` with another default and the same metadata
    (description declared once, in ``base``)."""
    f = next((x for x in fields(base) if x.name == name), None)
    if f is None:
        raise TypeError(f"{base.__name__} has no field {name!r}")
    return field(default=default, metadata=f.metadata)


# ------------------------------------------------------------------------------------------------
# The shared loop's settings
# ------------------------------------------------------------------------------------------------
OPT, CKPT, SYS = "optimization", "checkpoints and logging", "system"


@dataclass
class LoopConfig:
    """Settings of the shared training loop (train/common/loop.py), common to every model family."""

    steps: int = field(default=1000, metadata={"help": "total optimizer steps (sets the LR schedule)",
                                                "group": OPT})
    stop_at: int | None = field(default=None, metadata={
        "help": "stop this invocation after this global step (the schedule still spans --steps)", "group": OPT})
    max_minutes: float | None = field(default=None, metadata={
        "help": "stop (with a checkpoint) once training has taken this many minutes, resumed time included",
        "group": OPT})
    batch_size: int = field(default=8, metadata={"help": "windows per optimizer step and process", "group": OPT})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate (AdamW)", "group": OPT})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final LR of the cosine decay, as a fraction of --lr",
                                                       "group": OPT})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay of the >= 2-D weights",
                                                        "group": OPT})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "AdamW betas", "group": OPT})
    warmup: int = field(default=100, metadata={"help": "linear LR warm-up steps", "group": OPT})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0: off)", "group": OPT})
    ema_decay: float = field(default=0.999, metadata={
        "help": "EMA decay of the weights used for validation and inference", "group": OPT})
    seed: int = field(default=0, metadata={"help": "run seed: model init, data order, per-step noise",
                                           "group": OPT})
    ckpt_every: int = field(default=100, metadata={"help": "checkpoint every N steps", "group": CKPT})
    keep_last: int = field(default=3, metadata={"help": "newest checkpoints to keep (plus the best one)",
                                                "group": CKPT})
    eval_every: int = field(default=0, metadata={"help": "validation loss every N steps and at the end (0: off)",
                                                 "group": CKPT})
    eval_batches: int = field(default=8, metadata={"help": "validation batches per evaluation", "group": CKPT})
    patience: int = field(default=0, metadata={
        "help": "early stop after N evaluations without improvement (0: off)", "group": CKPT})
    log_every: int = field(default=10, metadata={"help": "metrics.jsonl training record every N steps",
                                                 "group": CKPT})
    out: str = field(default="artifacts/train/run", metadata={
        "help": "run directory (config.json, metrics.jsonl, ckpt/)", "group": CKPT})
    resume: str = field(default="auto", metadata={
        "help": "'auto' (newest complete checkpoint in --out), 'never' (refuse an existing run), "
                "or a checkpoint directory", "group": CKPT})
    init_from: str | None = field(default=None, metadata={
        "help": "warm start (fine-tune): load the model and EMA weights of this checkpoint (a step directory, "
                "a ckpt/best or ckpt/latest pointer, or a run directory) and start a fresh optimizer and LR "
                "schedule at step 0; the model config must match. Ignored when --out already holds a "
                "checkpoint to resume", "group": CKPT})
    progress: bool = field(default=True, metadata={"help": "the tqdm progress bar (without it: log lines only)",
                                                   "help_off": "no tqdm progress bar (log lines only)", "group": CKPT})
    num_threads: int = field(default=1, metadata={"help": "torch intra-op threads per process", "group": SYS})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes", "group": SYS})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N", "group": SYS})

    # settings whose change makes a resumed run a different run (families extend it)
    RESUME_MUST_MATCH: typing.ClassVar[tuple[str, ...]] = ("seed", "batch_size")

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.steps < 1 or self.batch_size < 1 or self.ckpt_every < 1 or self.log_every < 1:
            raise InputError("steps, batch_size, ckpt_every and log_every must be >= 1")
        if self.stop_at is not None and self.stop_at < 0:
            raise InputError("stop_at must be >= 0")
        if self.max_minutes is not None and self.max_minutes < 0:
            raise InputError("max_minutes must be >= 0")
        if self.warmup < 0 or self.keep_last < 1 or self.eval_every < 0 or self.patience < 0:
            raise InputError("warmup, eval_every, patience must be >= 0 and keep_last >= 1")
        if self.eval_batches < 1:
            raise InputError("eval_batches must be >= 1")
        if len(self.betas) != 2:
            raise InputError(f"betas needs two values, got {self.betas}")

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        return from_config_dict(cls, d)
