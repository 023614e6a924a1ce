#!/usr/bin/env bash
# pyenv.sh -- create (once) the Python venv the tests use to read Delta tables,
# and print the path of its python on stdout.
#
#   venv: ${HVRLAKE_CACHE:-$HOME/.cache/hvrlake}/venv  (outside the repo, reused)
#
# Idempotent: the venv is rebuilt only when the pinned versions below change.
set -euo pipefail

# Versions checked to work together. deltalake + pyarrow: the oracle of scripts/check_examples.py;
# with duckdb + its delta extension, chdb and polars: the readers of README "Reading the tables",
# run by scripts/check_readers.py (the extension loads only into the duckdb of its version).
PKGS="deltalake==1.6.6 pyarrow==26.0.1 duckdb==1.5.5 duckdb-extension-delta==1.5.5 chdb==4.4.0 polars==2.1.0"
V="${HVRLAKE_CACHE:-$HOME/.cache/hvrlake}/venv"
STAMP="$V/.hvrlake-pkgs"                   # records what was installed

if [ ! -x "$V/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$PKGS" ]; then
  rm -rf "$V"
  python3 -m venv "$V" >&2
  # shellcheck disable=SC2086  # PKGS is a list of words on purpose
  "$V/bin/pip" install -q $PKGS >&2
  printf '%s' "$PKGS" >"$STAMP"
fi
echo "$V/bin/python"
