#!/usr/bin/env bash
# Instructions per GetSession at concurrency 64, for the facade and for the
# sandbox serving it, counted over a few seconds of the harness's `unary` c=64
# facade phase. Counts, unlike CPU seconds, hardly move when other work shares
# the machine, so A/B comparisons of two builds are meaningful here where
# `verif8-bench` times are noisy.
#
#   scripts/instructions-per-rpc.sh [FACADE_BIN] [extra verif8-bench options]
#
# With hardware counters, `perf stat` counts user and kernel instructions of
# the processes running at full speed. Without perf or without counters (many
# VMs: perf says "<not supported>"), or with COUNTER=callgrind, both processes run under
# `valgrind --tool=callgrind` with instrumentation switched on only for the
# window: user-space instructions only, and a `rep movsb` copy counts one per
# byte, so compare callgrind counts only with callgrind counts.
# Run it on a release build (cargo build --release --bins).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/target/release/verif8-bench"
facade_bin="${1:-$root/target/release/verif8-grpc}"
shift || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

counter="${COUNTER:-perf}"
if [[ $counter == perf ]] && { ! command -v perf >/dev/null ||
  perf stat -x, -e instructions:u -- true 2>&1 | grep -q 'not supported'; }; then
  echo "perf cannot count instructions here (not installed, or no hardware counters); counting with callgrind" >&2
  counter=callgrind
fi
window=4
launched="$facade_bin"
if [[ $counter == callgrind ]]; then
  window=3
  launched="$work/under-callgrind"
  # The harness starts both the sandbox and the facade from this binary.
  cat >"$launched" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/callgrind.%p "$facade_bin" "\$@"
EOF
  chmod +x "$launched"
fi

"$bench" unary --unary-secs 8 --unary-rounds 1 --facade-bin "$launched" "$@" >"$work/bench.log" 2>&1 &
bench_pid=$!
# Phases run c=1 direct/facade/health, then c=64 direct, then c=64 facade; the
# "c=64 direct:" line is printed as the facade phase starts.
until grep -q "c=64 direct:" "$work/bench.log"; do
  kill -0 "$bench_pid" 2>/dev/null || { cat "$work/bench.log"; exit 1; }
  sleep 0.2
done
facade_pid=$(awk '/facade pid/ {print $3; exit}' "$work/bench.log")
sandbox_pid=$(awk '/sandbox pid/ {print $3; exit}' "$work/bench.log")
metrics_addr=$(tr '\0' ' ' </proc/"$facade_pid"/cmdline | grep -o -- '--http-listen [^ ]*' | awk '{print $2}')
rpcs() {
  curl -s "http://$metrics_addr/metrics" |
    awk '/^verif8_rpc_seconds_count\{.*GetSession/ {n += $2} END {print n}'
}

sleep 1 # past the phase's warm-up
if [[ $counter == callgrind ]]; then
  callgrind_control -i on "$facade_pid" >/dev/null 2>&1
  callgrind_control -i on "$sandbox_pid" >/dev/null 2>&1
  before=$(rpcs)
  sleep "$window"
  after=$(rpcs)
  callgrind_control -i off "$facade_pid" >/dev/null 2>&1
  callgrind_control -i off "$sandbox_pid" >/dev/null 2>&1
  callgrind_control -d "$facade_pid" >/dev/null 2>&1
  callgrind_control -d "$sandbox_pid" >/dev/null 2>&1
  wait "$bench_pid" || true
  total() { callgrind_annotate "$work/callgrind.$1.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
  fu=$(total "$facade_pid") fk=0
  su=$(total "$sandbox_pid") sk=0
else
  before=$(rpcs)
  perf stat -x, -e instructions:u,instructions:k -p "$facade_pid" -o "$work/facade" -- sleep "$window" &
  perf stat -x, -e instructions:u,instructions:k -p "$sandbox_pid" -o "$work/sandbox" -- sleep "$window"
  wait %2 2>/dev/null || true
  after=$(rpcs)
  wait "$bench_pid" || true
  count() { awk -F, -v event="$2" '$3 == event {print $1}' "$work/$1"; }
  fu=$(count facade instructions:u) fk=$(count facade instructions:k)
  su=$(count sandbox instructions:u) sk=$(count sandbox instructions:k)
fi

n=$((after - before))
echo "GetSession RPCs counted: $n over ${window} s, by $counter (facade binary $facade_bin)"
if [[ $counter == callgrind ]]; then
  echo "facade  instructions per RPC:     user $((fu / n))  (kernel not counted)"
  echo "sandbox instructions per request: user $((su / n))  (kernel not counted)"
else
  echo "facade  instructions per RPC:     user $((fu / n))  kernel $((fk / n))  total $(((fu + fk) / n))"
  echo "sandbox instructions per request: user $((su / n))  kernel $((sk / n))  total $(((su + sk) / n))"
fi
awk -v f=$((fu + fk)) -v s=$((su + sk)) 'BEGIN {printf "facade / sandbox: %.2f\n", f / s}'
