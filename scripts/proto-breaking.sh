#!/usr/bin/env bash
# buf breaking: the working tree's proto module (buf.yaml at the root, rules FILE) against a
# baseline commit, so a change that breaks generated clients fails the tests.
#
# The baseline is HEAD~1 unless BUF_BREAKING_AGAINST names another git ref (a branch, tag or
# commit, e.g. BUF_BREAKING_AGAINST=origin/main). In CI the checkout is a clean clone of main,
# so this compares the tip commit with the one before it; on a developer's machine it covers
# the last commit plus any uncommitted edits. A break in an earlier commit of a multi-commit
# push is not seen by HEAD~1: set BUF_BREAKING_AGAINST to the commit before the push for that.
#
# With no parent commit (the first commit, a shallow clone of depth 1) or outside a git
# checkout, the default baseline does not exist: the check says so and is skipped (exit 0).
# A BUF_BREAKING_AGAINST that does not resolve is an error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
buf="${BUF:-$root/.tools/bin/buf}"
against="${BUF_BREAKING_AGAINST:-HEAD~1}"

if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "proto-breaking: SKIPPED: $root is not a git checkout, so there is no baseline to compare with"
  exit 0
fi

if ! commit="$(git rev-parse --verify --quiet "$against^{commit}")"; then
  if [[ -n "${BUF_BREAKING_AGAINST:-}" ]]; then
    echo "proto-breaking: BUF_BREAKING_AGAINST=$against is not a commit in this repository" >&2
    exit 1
  fi
  if [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
    why="this is a shallow clone without HEAD's parent (fetch more history, e.g. git fetch --deepen=1)"
  else
    why="HEAD has no parent commit (the first commit)"
  fi
  echo "proto-breaking: SKIPPED: no baseline $against: $why"
  exit 0
fi

echo "proto-breaking: buf breaking of the working tree against $against (commit $(git rev-parse --short "$commit"))"
# A full commit hash: buf clones this repository's .git and checks that commit out.
rc=0
"$buf" breaking --against ".git#ref=$commit" || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "proto-breaking: FAILED (buf exit $rc): the proto changes above since $against break generated clients" >&2
  exit "$rc"
fi
echo "proto-breaking: no breaking changes"
