"""umask.runtime: the slim, torch-free on-device runtime (see umask/__init__.py and the README layout).

Privacy defaults, set when this package is imported, BEFORE any runtime module loads onnxruntime
(``os.environ.setdefault``: a value the user set explicitly wins):

* ``ORT_DISABLE_TELEMETRY=1``: onnxruntime's official builds ship a 1DS telemetry client that
  writes events under ``$XDG_CACHE_HOME`` / ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``
  and starts DNS lookups / uploads to ``mobile.events.data.microsoft.com`` a few seconds after a
  session is created. ``onnxruntime.disable_telemetry_events()`` does not stop that client; this
  variable, read when onnxruntime initialises, does (onnxruntime's Privacy.md, "Disabling Telemetry").
  It only works if it is set before ``import onnxruntime``: import ``umask.runtime`` (any runtime
  module does) first, or export it in the environment of the process.
* ``HF_HUB_DISABLE_TELEMETRY=1`` and ``HF_HUB_OFFLINE`` left alone: the runtime never calls the Hub
  (the SBERT tokenizer is read from the bundle with ``Tokenizer.from_str``), the variable only
  silences any Hub client another library might start.
* llama.cpp / llama-cpp-python: no telemetry and no environment knob for one; the runtime opens the
  bundle's GGUF by path (``Llama(model_path=...)``), never ``Llama.from_pretrained`` (the only code path
  that downloads), so nothing is set for it.

``tests/test_hardening_privacy_native.py`` checks at the system-call level (strace) that a process
holding a Session for 20 s makes no non-local connection and writes nothing under its HOME.
"""

import os as _os

PRIVACY_ENV = {"ORT_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
for _k, _v in PRIVACY_ENV.items():
    _os.environ.setdefault(_k, _v)
del _k, _v
