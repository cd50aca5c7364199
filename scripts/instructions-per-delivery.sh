#!/usr/bin/env bash
# Instructions the facade spends per WatchSession delivery in the harness's
# `fan-out` scenario, counted by callgrind from each round's CheckCode to its
# last delivery (user space only; see instructions-per-rpc.sh for what that
# means). Setting up the watchers between rounds is not counted.
#
#   scripts/instructions-per-delivery.sh [FACADE_BIN] [extra verif8-bench options]
#
# Run it on a release build (cargo build --release --bins). Under callgrind the
# facade is tens of times slower, so the harness's latency figures mean nothing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/target/release/verif8-bench"
facade_bin="${1:-$root/target/release/verif8-grpc}"
shift || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rounds=3
watchers=1000

# The harness starts both the sandbox and the facade from this binary.
cat >"$work/under-callgrind" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/callgrind.%p "$facade_bin" "\$@"
EOF
# Run by the harness as `around on|off PID`; each round's count is dumped at
# its end, before the harness stops the facade.
cat >"$work/around" <<'EOF'
#!/bin/sh
callgrind_control -i "$1" "$2" >/dev/null
if [ "$1" = off ]; then callgrind_control -d "$2" >/dev/null; fi
EOF
chmod +x "$work/under-callgrind" "$work/around"

"$bench" fan-out --fanout-rounds "$rounds" --watchers "$watchers" \
  --facade-bin "$work/under-callgrind" --around-deliveries "$work/around" "$@" \
  >"$work/bench.log" 2>&1 || { cat "$work/bench.log"; exit 1; }
facade_pid=$(awk '/facade pid/ {print $3; exit}' "$work/bench.log")

total=0
for part in "$work/callgrind.$facade_pid".*; do
  count=$(callgrind_annotate "$part" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  total=$((total + count))
done
deliveries=$((rounds * watchers))
echo "deliveries counted: $deliveries ($rounds rounds of $watchers watchers), by callgrind (facade binary $facade_bin)"
echo "facade instructions per delivery: user $((total / deliveries))  (kernel not counted; each round's CheckCode included)"
if [[ -n ${KEEP:-} ]]; then
  cp "$work/callgrind.$facade_pid".* "$KEEP"/
  echo "callgrind files copied to $KEEP"
fi
