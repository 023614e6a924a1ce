#!/usr/bin/env bash
# pyenv-bench.sh -- create (once) the Python venv scripts/bench-peers runs in, and print
# the path of its python on stdout. Kept apart from scripts/pyenv.sh (the tests' venv) so
# that the tests never pull in polars or duckdb.
#
#   venv: ${HVRLAKE_CACHE:-$HOME/.cache/hvrlake}/venv-bench  (outside the repo, reused)
#   use:  "$(scripts/pyenv-bench.sh)" scripts/bench-peers --help
#
# Idempotent: the venv is rebuilt only when the pinned versions below change.
# deltalake/pyarrow are the same pins as scripts/pyenv.sh; polars' write_delta goes through
# deltalake, so these versions were checked together (CPython 3.11; numpy 2.5 needs 3.12+).
set -euo pipefail

PKGS="deltalake==1.6.6 pyarrow==26.0.1 polars==2.1.0 polars-runtime-32==2.1.0 duckdb==2.0.0 numpy==2.4.6"
V="${HVRLAKE_CACHE:-$HOME/.cache/hvrlake}/venv-bench"
STAMP="$V/.hvrlake-pkgs"                   # records what was installed

if [ ! -x "$V/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$PKGS" ]; then
  rm -rf "$V"
  python3 -m venv "$V" >&2
  # shellcheck disable=SC2086  # PKGS is a list of words on purpose
  "$V/bin/pip" install -q $PKGS >&2
  printf '%s' "$PKGS" >"$STAMP"
fi
echo "$V/bin/python"
