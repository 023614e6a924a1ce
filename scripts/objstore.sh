#!/usr/bin/env bash
# objstore.sh install|start|stop  -- moto (S3+DynamoDB) on $S3_PORT, Azurite blob on $AZ_PORT
#
# Local object-storage emulators for the S3 / Azure tests, as checked in
# shared/research/object-storage-emulators.md (moto 5.2.5, Azurite 3.35.0 for Node 20).
# Both listen on 127.0.0.1 only. `start` also creates the buckets $S3_BUCKETS and the
# containers $AZ_CONTAINERS (default: "delta" each). Installs go to $OBJSTORE_DIR,
# default ${HVRLAKE_CACHE:-$HOME/.cache/hvrlake}/objstore (outside the repo, reused).
set -euo pipefail
D=${OBJSTORE_DIR:-${HVRLAKE_CACHE:-$HOME/.cache/hvrlake}/objstore}; mkdir -p "$D"
S3_PORT=${S3_PORT:-5000}; AZ_PORT=${AZ_PORT:-10000}; AZ_ACCT=devstoreaccount1
# Azurite's well-known development key (public, not a secret).
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
# wait_http URL: wait up to 15 s until anything answers HTTP there.
wait_http() { for _ in $(seq 1 150); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" != 000 ] && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
# az_mkcontainer NAME: create a blob container with curl + openssl (SharedKey auth); prints 201 or 409.
az_mkcontainer() { local c=$1 d v=2021-08-06 sig; d=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
  sig=$(printf "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:$d\nx-ms-version:$v\n/$AZ_ACCT/$AZ_ACCT/$c\nrestype:container" |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(printf %s "$AZ_KEY" | base64 -d | od -An -tx1 | tr -d ' \n')" -binary | base64 -w0)
  curl -s -o /dev/null -w '%{http_code}' -X PUT -H "x-ms-date: $d" -H "x-ms-version: $v" -H 'Content-Length: 0' \
    -H "Authorization: SharedKey $AZ_ACCT:$sig" "http://127.0.0.1:$AZ_PORT/$AZ_ACCT/$c?restype=container"; }
case ${1:-} in
install)
  [ -x "$D/venv/bin/moto_server" ] || { python3 -m venv "$D/venv" && "$D/venv/bin/pip" install -q 'moto[s3]==5.2.5' flask flask-cors; }
  [ -x "$D/node_modules/.bin/azurite-blob" ] || npm install --prefix "$D" --no-audit --no-fund --silent azurite@3.35.0 ;;
start)
  setsid "$D/venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$D/moto.log" 2>&1 </dev/null & echo $! >"$D/moto.pid"
  mkdir -p "$D/azurite"
  setsid "$D/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$D/azurite" \
    --silent --disableTelemetry --skipApiVersionCheck >"$D/azurite.log" 2>&1 </dev/null & echo $! >"$D/azurite.pid"
  wait_http "http://127.0.0.1:$S3_PORT/moto-api/"; wait_http "http://127.0.0.1:$AZ_PORT/"
  for b in ${S3_BUCKETS:-delta}; do curl -sf -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/$b"; done
  for c in ${AZ_CONTAINERS:-delta}; do az_mkcontainer "$c" >/dev/null; done ;;
stop)
  for p in moto azurite; do [ -f "$D/$p.pid" ] && kill "$(cat "$D/$p.pid")" 2>/dev/null; rm -f "$D/$p.pid"; done; true ;;
*) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
