#!/usr/bin/env bash
# Starts N copies of a command on this node as torchrun does (RANK,
# WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR/PORT,
# TORCHELASTIC_RUN_ID), each one's output in LOGS/rank-R.log; waits for
# all and exits 1 if any failed.
# Usage: launch.sh N LOGS COMMAND...
set -u
n=$1 logs=$2
shift 2
mkdir -p "$logs"
# A free port, as a launcher would be given one.
port=${MASTER_PORT:-$(python3 -c "import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")}
pids=()
for ((r = 0; r < n; r++)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n GROUP_RANK=0 MASTER_ADDR=127.0.0.1 \
    MASTER_PORT=$port TORCHELASTIC_RUN_ID=${TORCHELASTIC_RUN_ID:-lit} \
    TORCHELASTIC_RESTART_COUNT=0 "$@" > "$logs/rank-$r.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
