#!/usr/bin/env bash
# The whole-suite secret scan: after `cargo test` ran with LANDFALL_TEST_ARTIFACTS=DIR, grep
# every file and log the tests produced (landing zones, manifests, state, dead letters, XCom
# files, logs; gzip and zstd parts decompressed) for the secret values in tests/fixtures/test-secrets.txt.
# The configs the tests wrote are inputs and are not scanned (one holds a literal secret on
# purpose, to prove it is rejected without being echoed).
#
# One `grep -F` reads every plain file (a shell loop that read each file into a variable took
# about two minutes on the hundreds of megabytes the memory tests land); each gzip part is
# decompressed into its own `grep -F`, as is each zstd part.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:?usage: tests/secret_scan.sh ARTIFACTS_DIR}
secrets=$(mktemp)
trap 'rm -f "$secrets"' EXIT
grep -v '^#' "$root/tests/fixtures/test-secrets.txt" | grep -v '^$' > "$secrets"
files=$(find "$dir" -type f ! -name 'config*.yaml' | wc -l)
if [ "$files" -lt 50 ]; then
  echo "secret scan: only $files files under $dir; did the tests run with LANDFALL_TEST_ARTIFACTS?" >&2
  exit 1
fi
leaks=0
report() {  # file, then the secrets found in it on stdin
  local secret
  while IFS= read -r secret; do
    echo "secret scan: '$secret' found in $1" >&2
    leaks=$((leaks + 1))
  done
}
# Plain files: grep prints the file, a NUL (a tab here: paths may hold colons) and the secret
# for every match (-o), once per pair after sort -u.
while IFS= read -r hit; do
  report "${hit%$'\t'*}" <<< "${hit##*$'\t'}"
done < <(grep -r -a -o -F --null -f "$secrets" --exclude='config*.yaml' --exclude='*.gz' --exclude='*.zst' "$dir" | tr '\0' '\t' | sort -u || true)
# Gzip and zstd parts, decompressed (a part that does not decompress is scanned as it is).
if [ -n "$(find "$dir" -type f -name '*.zst' -print -quit)" ] && ! command -v zstd >/dev/null; then
  echo "secret scan: installing zstd (Debian) to read the zstd parts" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null; } || {
    echo "secret scan: zstd parts under $dir, and no zstd command to read them" >&2
    exit 1
  }
fi
while IFS= read -r -d '' file; do
  case "$file" in
    *.gz) decompress=(gzip -dc) ;;
    *) decompress=(zstd -dcq) ;;
  esac
  found=$({ "${decompress[@]}" "$file" 2>/dev/null || cat "$file"; } | grep -a -o -F -f "$secrets" | sort -u || true)
  if [ -n "$found" ]; then report "$file" <<< "$found"; fi
done < <(find "$dir" -type f \( -name '*.gz' -o -name '*.zst' \) ! -name 'config*.yaml' -print0)
echo "secret scan: $files files, $(wc -l < "$secrets") secrets, $leaks leaks"
[ "$leaks" -eq 0 ]
