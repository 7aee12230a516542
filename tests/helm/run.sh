#!/usr/bin/env bash
# Tests of the Helm chart helm/landfall: strict lint, values schema, rendering in both modes,
# kubernetes-validate --strict against the newest three bundled Kubernetes versions.
# No helm binary is needed: helm-python-sdk binds Helm's Go SDK.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/helm"

venv_works() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, pytest, yaml' 2>/dev/null
}

if ! venv_works; then
    echo "tests/helm: installing tools into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "helm-python-sdk>=0.2.2,<0.3" "kubernetes-validate>=1.37,<2" "pytest>=8" "pyyaml>=6"
fi

cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$ROOT/tests/helm" -p no:cacheprovider -q "$@"
