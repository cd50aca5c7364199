#!/usr/bin/env bash
# Runs every test, doing all its own set-up (the command for the README and for CI):
# tools, formatting, lints, proto lint and breaking-change check, cargo tests, then the
# end-to-end scripts against the debug binary (grpcurl, the clients in examples/, the benchmark
# smoke, conformance). Stops at the first failing step and says which; prints each step's time.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools="$root/.tools"
py="$tools/venv/bin/python"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/verif8-grpc"

steps=()   # "name seconds" of each finished step, for the summary
total_steps=12
n=0

summary() {
  echo
  echo "step timings:"
  for s in "${steps[@]}"; do printf '  %-28s %6ss\n' "${s% *}" "${s##* }"; done
}

# step NAME CMD...: runs one step; on failure names it, shows the timings so far and exits.
step() {
  local name="$1"; shift
  n=$((n + 1))
  echo
  echo "==> [$n/$total_steps] $name: $*"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  steps+=("$name $((SECONDS - start))")
  if [[ $rc -ne 0 ]]; then
    summary
    echo
    echo "test.sh: FAILED at step '$name' (exit $rc): $*" >&2
    exit "$rc"
  fi
}

step setup-tools        scripts/setup-tools.sh
step fmt                cargo fmt --all -- --check
step clippy             cargo clippy --locked --workspace --all-targets -- -D warnings
step buf-lint           "$tools/bin/buf" lint
# Against HEAD~1 (or $BUF_BREAKING_AGAINST); skipped with a note when there is no parent commit.
step buf-breaking       scripts/proto-breaking.sh
step cargo-test         cargo test --locked --workspace --all-targets
# Usually a no-op (cargo test already built it), but the e2e steps must not depend on that.
step build-binary       cargo build --locked --workspace --bins
step e2e-grpcurl        "$py" tests/e2e/grpcurl_walkthrough.py --bin "$bin" --grpcurl "$tools/bin/grpcurl"
step e2e-python-example "$py" tests/e2e/examples.py --bin "$bin" --grpcurl "$tools/bin/grpcurl" --example python
step e2e-node-example   "$py" tests/e2e/examples.py --bin "$bin" --grpcurl "$tools/bin/grpcurl" --example node
# The benchmark harness works end to end (a seconds-long smoke; figures mean nothing here).
step bench-smoke        "${CARGO_TARGET_DIR:-$root/target}/debug/verif8-bench" all --smoke
step e2e-conformance    "$py" tests/e2e/conformance.py --bin "$bin" --grpcurl "$tools/bin/grpcurl" \
                          --prism "$tools/bin/prism"

summary
echo "steps: $n passed, 0 failed"
