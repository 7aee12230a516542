#!/usr/bin/env bash
# The whole-suite secret scan: after `cargo test` ran with LANDFALL_TEST_ARTIFACTS=DIR, grep
# every file and log the tests produced (landing zones, manifests, state, dead letters, XCom
# files, logs; gzip parts decompressed) for the secret values in tests/fixtures/test-secrets.txt.
# The configs the tests wrote are inputs and are not scanned (one holds a literal secret on
# purpose, to prove it is rejected without being echoed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:?usage: tests/secret_scan.sh ARTIFACTS_DIR}
secrets=$(grep -v '^#' "$root/tests/fixtures/test-secrets.txt" | grep -v '^$')
files=$(find "$dir" -type f ! -name 'config*.yaml' | wc -l)
if [ "$files" -lt 50 ]; then
  echo "secret scan: only $files files under $dir; did the tests run with LANDFALL_TEST_ARTIFACTS?" >&2
  exit 1
fi
leaks=0
while IFS= read -r file; do
  if [[ "$file" == *.gz ]]; then content=$(gzip -dc "$file" 2>/dev/null || true); else content=$(cat "$file"); fi
  while IFS= read -r secret; do
    if [[ "$content" == *"$secret"* ]]; then
      echo "secret scan: '$secret' found in $file" >&2
      leaks=$((leaks + 1))
    fi
  done <<< "$secrets"
done < <(find "$dir" -type f ! -name 'config*.yaml')
echo "secret scan: $files files, $(wc -l <<< "$secrets") secrets, $leaks leaks"
[ "$leaks" -eq 0 ]
