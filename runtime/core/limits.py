"""Resource limits of the runtime's readers, declared once.

Every reader applies its limits WHILE it reads (a line longer than ``max_line_bytes`` is refused
after reading that many bytes, not after reading the whole line; the decompressed byte count
is checked on every block), so a hostile file costs at most the limit in time and memory. A limit
that trips raises `LimitError` naming the file, the line and the limit.

Two profiles:

* ``HISTORY_LIMITS`` (default of ``load_history`` / ``read_events_csv`` / ``check_history`` /
  manifests): one user's on-device history, about a year of heavy use;
* ``BULK_LIMITS`` (default of ``read_official_trace`` / ``read_llmapp_sample`` / ``read_trace`` and
  the catalog tables): data sets on a workstation (the simulator's 1000-user weeks, the full trace).

Pass your own ``Limits(...)`` (``dataclasses.replace(HISTORY_LIMITS, max_events=...)``) to change one.
`Limits.describe()` lists every limit with its description (``python -m umask.runtime.core.limits``).

`RequestLimits` (``REQUEST_LIMITS``) bounds what one on-device request may ask of a `Session`
(threads, sampler steps x samples, the profile text, the embedding cache, ``now_ts`` past the
history, the decoded output ranges); ``umask run --help`` prints them. A request beyond one
raises `LimitError` (``InputError``) naming the argument and the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """Resource limits applied while reading. Each field's ``metadata["doc"]`` says what it bounds."""

    max_events: int = 2_000_000
    max_lines: int = 2_100_000
    max_line_bytes: int = 4096
    max_decompressed_bytes: int = 256 * 2**20
    max_span_days: int = 366
    max_manifest_bytes: int = 16 * 2**20
    max_manifest_depth: int = 32

    DOCS = {
        "max_events": "records kept (one per event); the reader stops at the first one over",
        "max_lines": "physical lines read, blank and skipped ones included (a file of blank lines is bounded too)",
        "max_line_bytes": "bytes of one line (UTF-8); a longer line is refused after reading this many",
        "max_decompressed_bytes": "bytes after gzip decompression (or of a plain file) read in all",
        "max_span_days": "days between the first and the last event (checked on every block of records)",
        "max_manifest_bytes": "bytes of a bundle's manifest.json",
        "max_manifest_depth": "nesting depth of JSON arrays / objects in a manifest",
    }

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if type(v) is not int or v < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {v!r}")

    @classmethod
    def describe(cls) -> dict[str, str]:
        return dict(cls.DOCS)


@dataclass(frozen=True)
class RequestLimits:
    """Bounds of one Session and its requests, declared once (`DOCS` says what each one bounds)."""

    max_threads: int = 64
    max_steps: int = 200
    max_samples: int = 16
    max_denoiser_calls: int = 1000
    max_seed: int = 2**63 - 1
    max_k: int = 1000
    max_text_chars: int = 8192
    max_cache_entries: int = 256
    max_idle_hours: int = 48
    max_traffic_bytes_per_slot: float = 1e12
    max_app_records_per_slot: float = 1e4

    DOCS = {
        "max_threads": "onnxruntime intra-op / inter-op threads of a Session (more threads than this hang the host)",
        "max_steps": "sampler steps of one completion",
        "max_samples": "completions averaged in one request (n_samples)",
        "max_denoiser_calls": "steps x n_samples: DiT evaluations of one request (bounds its time)",
        "max_seed": "the largest sampler seed",
        "max_k": "items asked of a recommendation (k)",
        "max_text_chars": "characters of a caller's profile text (UTF-8, no lone surrogates)",
        "max_cache_entries": "SBERT embeddings kept in a Session's cache (least recently used dropped)",
        "max_idle_hours": "hours between the last event and now_ts (the empty slots between them count as observed "
                          "inactivity; a now_ts further away is refused, not served from an all-empty context)",
        "max_traffic_bytes_per_slot": "decoded traffic of one slot and cell is clipped to this many bytes",
        "max_app_records_per_slot": "decoded records of one app category, slot and cell are clipped to this",
    }

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 1 or v != v or v == float("inf"):
                raise ValueError(f"RequestLimits.{f.name} must be a finite number >= 1, got {v!r}")

    @classmethod
    def describe(cls) -> dict[str, str]:
        return dict(cls.DOCS)

    def help_text(self) -> str:
        """One line per bound (what ``umask run --help`` prints)."""
        def fmt(v: int | float) -> str:
            return f"{v:,}" if isinstance(v, int) else f"{v:g}"

        return "\n".join(f"  {name} = {fmt(getattr(self, name))}: {doc}" for name, doc in self.DOCS.items())


HISTORY_LIMITS = Limits()
REQUEST_LIMITS = RequestLimits()
BULK_LIMITS = Limits(max_events=200_000_000, max_lines=210_000_000, max_line_bytes=65536,
                     max_decompressed_bytes=32 * 2**30, max_span_days=100 * 366)

__all__ = ["Limits", "HISTORY_LIMITS", "BULK_LIMITS", "RequestLimits", "REQUEST_LIMITS"]

if __name__ == "__main__":
    for name, doc in Limits.describe().items():
        print(f"{name:24s} history={getattr(HISTORY_LIMITS, name):>14,}  bulk={getattr(BULK_LIMITS, name):>14,}  {doc}")
    print("requests (RequestLimits):")
    print(REQUEST_LIMITS.help_text())
