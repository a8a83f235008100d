#!/usr/bin/env bash
# Builds llama-cpp-python once into a wheel cache and prints the wheel directory.
# The flags avoid -march=native: some of these CPUs advertise AMX but fault on it.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
PYTHON="${PYTHON:-python3}"
# One cache folder per (version, flags), so a wheel built with other flags is never reused.
KEY=$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-12)
CACHE="${LMSERVE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lmserve/wheels}/$KEY"
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    mkdir -p "$CACHE"
    echo "Building llama-cpp-python $VERSION (compiles llama.cpp, about 6 minutes on 2 cores)..." >&2
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PYTHON" -m pip wheel --no-deps --no-cache-dir "llama-cpp-python==$VERSION" -w "$CACHE" >&2
fi
echo "$CACHE"
