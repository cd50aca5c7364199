#!/usr/bin/env bash
# Instructions (user and kernel) per GetSession at concurrency 64, for the
# facade and for the sandbox serving it, counted by `perf stat` over 4 s of
# the harness's `unary` c=64 facade phase. Counts, unlike CPU seconds, hardly
# move when other work shares the machine, so A/B comparisons of two builds
# are meaningful here where `verif8-bench` times are noisy.
#
#   scripts/instructions-per-rpc.sh [FACADE_BIN] [extra verif8-bench options]
#
# Needs perf (linux-perf) allowed to attach to the children, and hardware
# counters: some VMs have none (perf says "<not supported>"); there, count
# user-space instructions with callgrind instead (BENCHMARKS.md, "Notes on
# method"). Run it on a release build (cargo build --release --bins).
set -euo pipefail

if perf stat -x, -e instructions:u -- true 2>&1 | grep -q 'not supported'; then
  echo "perf cannot count instructions here (no hardware counters in this VM)" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/target/release/verif8-bench"
facade_bin="${1:-$root/target/release/verif8-grpc}"
shift || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bench" unary --unary-secs 8 --unary-rounds 1 --facade-bin "$facade_bin" "$@" >"$work/bench.log" 2>&1 &
bench_pid=$!
# Phases run c=1 direct/facade/health, then c=64 direct, then c=64 facade.
until grep -q "c=64 direct" "$work/bench.log"; do
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
before=$(rpcs)
perf stat -x, -e instructions:u,instructions:k -p "$facade_pid" -o "$work/facade" -- sleep 4 &
perf stat -x, -e instructions:u,instructions:k -p "$sandbox_pid" -o "$work/sandbox" -- sleep 4
wait %2 2>/dev/null || true
after=$(rpcs)
wait "$bench_pid" || true

count() { awk -F, -v event="$2" '$3 == event {print $1}' "$work/$1"; }
n=$((after - before))
fu=$(count facade instructions:u) fk=$(count facade instructions:k)
su=$(count sandbox instructions:u) sk=$(count sandbox instructions:k)
echo "GetSession RPCs counted: $n (facade binary $facade_bin)"
echo "facade  instructions per RPC:     user $((fu / n))  kernel $((fk / n))  total $(((fu + fk) / n))"
echo "sandbox instructions per request: user $((su / n))  kernel $((sk / n))  total $(((su + sk) / n))"
awk -v f=$((fu + fk)) -v s=$((su + sk)) 'BEGIN {printf "facade / sandbox: %.2f\n", f / s}'
