#!/usr/bin/env bash
# Builds llama-cpp-python once into a wheel cache and prints the wheel directory.
#   LMSERVE_BACKEND=cpu|cuda|vulkan   the llama.cpp backend (default cpu)
#   LMSERVE_CMAKE_ARGS="..."          more CMake flags (e.g. -DCMAKE_CUDA_ARCHITECTURES=86)
# The CPU flags avoid -march=native: some of these CPUs advertise AMX but fault on it.
# GPU builds keep them, since the CPU still runs what is not offloaded.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
BACKEND="${LMSERVE_BACKEND:-cpu}"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
case "$BACKEND" in
    cpu) ;;
    # the GPUs of the building machine only: all CUDA architectures take hours to compile
    cuda) FLAGS="$FLAGS -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native" ;;
    vulkan) FLAGS="$FLAGS -DGGML_VULKAN=ON" ;;
    *) echo "LMSERVE_BACKEND must be cpu, cuda or vulkan, not '$BACKEND'" >&2; exit 2 ;;
esac
if [ -n "${LMSERVE_CMAKE_ARGS:-}" ]; then FLAGS="$FLAGS $LMSERVE_CMAKE_ARGS"; fi
PYTHON="${PYTHON:-python3}"
# One cache folder per (version, backend, flags), so a wheel built otherwise is never
# reused. The CPU folder keeps its name from before backends were chosen.
KEY=$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-12)
[ "$BACKEND" = cpu ] || KEY="$BACKEND-$KEY"
CACHE="${LMSERVE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lmserve/wheels}/$KEY"
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    mkdir -p "$CACHE"
    echo "Building llama-cpp-python $VERSION for $BACKEND (compiles llama.cpp: about 6 minutes on 2 cores for the CPU, longer for a GPU)..." >&2
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PYTHON" -m pip wheel --no-deps --no-cache-dir "llama-cpp-python==$VERSION" -w "$CACHE" >&2
fi
echo "$CACHE"
