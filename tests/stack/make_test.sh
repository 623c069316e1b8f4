#!/usr/bin/env bash
# `make` with no target: it must list the targets and run nothing (the whole suite takes
# half an hour as root and starts a Docker engine). Every target the Makefile defines is in
# that list with its one-line `## target: text` description.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "make_test: $*" >&2; exit 1; }

# What `make` alone would run: only the help text's own commands.
dry=$(make -n --no-print-directory)
if grep -Eq 'cargo|tests/|scripts/|bench/' <<<"$dry"; then
  fail "make with no target would run: $dry"
fi
out=$(make --no-print-directory) || fail "make with no target failed: $out"

targets=$(awk -F: '/^[a-z][a-z0-9-]*:/ && !/:=/ {print $1}' Makefile | sort -u)
[[ -n $targets ]] || fail "no targets found in the Makefile"
for t in $targets; do
  grep -q "^## $t: ." Makefile || fail "target '$t' has no '## $t: description' line"
  want=$(sed -n "s/^## $t: //p" Makefile)
  grep -Fxq "$(printf '  %-14s %s' "$t" "$want")" <<<"$out" \
    || fail "make does not list '$t' with its description; it printed:
$out"
done
echo "make_test: ok"
