#!/usr/bin/env bash
# The storage suite (tests/it/storage.rs) against real emulators: moto (S3), Azurite (Azure
# Blob) and fake-gcs-server (GCS), each on a free 127.0.0.1 port, plus a second moto that
# enforces IAM for the permission tests. Installs them on first use (tests/emulators/
# emulators.sh), runs the suite's tests with --include-ignored (the emulator tests are ignored
# under a plain `cargo test`; run without an emulator's settings they fail), and stops
# everything it started, by PID.
#
#   tests/storage/run.sh            # what `scripts/test integration` runs
#   tests/storage/run.sh NAME       # only tests whose name contains NAME
#
# The opt-in live GCS profile (storage::gcs_live_profile) runs too when
# LANDFALL_GCS_LIVE_BUCKET and GCS credentials are set in the environment (README, "Storage
# tests"); otherwise it is skipped here and stays listed as ignored.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
started=$SECONDS

# shellcheck source=../emulators/emulators.sh
source "$root/tests/emulators/emulators.sh"
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/landfall-storage.XXXXXX")
export LANDFALL_EMULATORS_RUN_DIR="$run_dir" LANDFALL_EMULATORS_ENV="$run_dir/env.sh"

cleanup() {
  local status=$?
  landfall_emulators_stop
  _landfall_emu_stop_pids moto-iam sts
  if [[ $status -ne 0 ]]; then
    for log in "$run_dir"/*.log; do
      [[ -s "$log" ]] || continue
      echo "--- $(basename "$log") (last lines)" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$run_dir"
  exit "$status"
}
trap cleanup EXIT

landfall_emulators_start >/dev/null
landfall_emulators_versions
# shellcheck disable=SC1090
source "$LANDFALL_EMULATORS_ENV"

# A moto that enforces IAM once four set-up actions are done (bucket, user, policy, key).
# Its readiness probe hits /moto-api/, which moto does not count as an action.
python="$LANDFALL_EMULATORS_TOOLS/venv/bin/python"
_landfall_emu_launch moto-iam /moto-api/ env INITIAL_NO_AUTH_ACTION_COUNT=4 \
  "$LANDFALL_EMULATORS_TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "{PORT}"
iam_port=$(cat "$run_dir/moto-iam.port")
iam_env=$("$python" tests/storage/helpers.py s3-iam-setup "http://127.0.0.1:$iam_port" landfall-perm)
eval "$iam_env"
# The permission tests rely on how moto enforces IAM, which changes between releases: probe it
# once and stop with a message naming the difference, not with an unrelated assertion later.
"$python" tests/storage/helpers.py s3-iam-probe "http://127.0.0.1:$iam_port" landfall-perm \
  "$LANDFALL_TEST_S3_READONLY_KEY_ID" "$LANDFALL_TEST_S3_READONLY_SECRET"

# An STS stand-in for the web identity (IRSA) test: object_store only talks to STS over
# https, and moto cannot route the unsigned request, so a small HTTPS server answers it.
"$python" tests/storage/helpers.py sts-server "$run_dir" >"$run_dir/sts.log" 2>&1 </dev/null &
echo $! >"$run_dir/sts.pid"
for ((i = 0; i < 300; i++)); do
  [[ -s "$run_dir/sts.port" ]] && break
  kill -0 "$(cat "$run_dir/sts.pid")" 2>/dev/null || { echo "the STS stand-in exited" >&2; exit 1; }
  sleep 0.1
done
sts_port=$(cat "$run_dir/sts.port")
export LANDFALL_TEST_STS_ENDPOINT="https://127.0.0.1:$sts_port"

export LANDFALL_TEST_PYTHON="$python"
# GCS credentials for the emulator come from the environment, as in production; the
# emulator ignores the token.
export GOOGLE_BEARER_TOKEN=landfall-emulator-bearer-token
echo "storage: emulators ready in $((SECONDS - started)) s" >&2

# The storage tests are the `storage::` module of the one integration-test binary; NAME picks
# those of them whose name contains it.
filter=(storage::)
if [[ $# -gt 0 ]]; then
  mapfile -t filter < <(cargo test --locked --quiet --test it -- --list storage:: 2>/dev/null \
    | sed -n 's/: test$//p' | grep -F -- "$1")
  [[ ${#filter[@]} -gt 0 ]] || { echo "storage: no storage test name contains '$1'" >&2; exit 1; }
  filter+=(--exact)
fi
live=()
if [[ -z "${LANDFALL_GCS_LIVE_BUCKET:-}" ]]; then
  echo "storage: SKIP storage::gcs_live_profile: LANDFALL_GCS_LIVE_BUCKET is not set" >&2
  live=(--skip storage::gcs_live_profile)
fi
nice -n 10 cargo test --locked --test it -- --include-ignored --test-threads 3 "${filter[@]}" "${live[@]}"
echo "storage: suite finished in $((SECONDS - started)) s" >&2
