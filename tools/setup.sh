#!/usr/bin/env bash
# Installs what is missing from Debian (idempotent, quick when nothing is),
# then configures and builds mtc into build/ (ccache when present).
# Usage: tools/setup.sh [--runtime-only]   (runtime-only: no MLIR needed)
# MT_SETUP_TARGETS (space-separated) builds those targets only, as
# tools/demo.sh does for the tools it runs; default: everything, tests too.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=0
[[ "${1:-}" == "--runtime-only" ]] && runtime_only=1

packages=(cmake ninja-build g++ ccache pkg-config
          libprotobuf-dev protobuf-compiler libcli11-dev nlohmann-json3-dev
          libyaml-cpp-dev libopenblas-dev libgtest-dev libgloo-dev
          libopenmpi-dev openmpi-bin python3 libpcre2-dev libutf8proc-dev)
if (( ! runtime_only )); then
  packages+=(libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and npm install the tests' reference packages (tools/npm-references.sh);
# a Node from elsewhere (e.g. nodesource, which bundles npm) is kept.
command -v npm > /dev/null || missing+=(nodejs npm)
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  (( EUID == 0 )) || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${MT_BUILD_DIR:-build}
cmake_args=(-S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release)
if (( runtime_only )); then
  cmake_args+=(-DMT_BUILD_COMPILER=OFF)
else
  cmake_args+=(-DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir)
fi
# A build directory copied or moved from another checkout cannot be
# reconfigured in place: say so instead of CMake's cache errors.
if [[ -f "$build_dir/CMakeCache.txt" ]]; then
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build_dir/CMakeCache.txt")
  if [[ -n "$home" && "$home" != "$PWD" ]]; then
    echo "setup: $build_dir was configured for the checkout $home, not this one ($PWD):" \
         "remove it (rm -rf $build_dir) and run again" >&2
    exit 1
  fi
fi
mkdir -p "$build_dir"
cmake "${cmake_args[@]}" > "$build_dir/configure.log" 2>&1 || {
  cat "$build_dir/configure.log"; exit 1; }
targets=()
[[ -n "${MT_SETUP_TARGETS:-}" ]] && read -r -a targets <<< "--target $MT_SETUP_TARGETS"
cmake --build "$build_dir" -j "$(nproc)" "${targets[@]}"
