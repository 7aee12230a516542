#!/usr/bin/env bash
# Tests of the Helm chart helm/landfall: strict lint, values schema, rendering in every mode,
# kubernetes-validate --strict against the newest three bundled Kubernetes versions.
# No helm binary is needed: helm-python-sdk binds Helm's Go SDK. The `helm test` pods' commands
# run against the demo API with the landfall binary (LANDFALL_BIN, default target/debug/landfall;
# those tests are skipped without it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/helm"

# shellcheck source=../tools/tools.sh
source "$ROOT/tests/tools/tools.sh"
landfall_tools_venv helm "$VENV" || { echo "tests/helm: installing tests/tools/helm.txt failed" >&2; exit 1; }
"$VENV/bin/python" -c 'import helm_python, kubernetes_validate, pytest, yaml' ||
    { echo "tests/helm: $VENV is not usable after install" >&2; exit 1; }
landfall_tools_report helm "$VENV" helm-python-sdk kubernetes-validate pytest

cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$ROOT/tests/helm" -p no:cacheprovider -q "$@"
