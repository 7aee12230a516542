#!/usr/bin/env bash
# Installs the test suites' tools from the locks in this folder (see README.md here). Sourced by
# each suite's run.sh; defines functions and changes no shell options.
#
#   landfall_tools_venv NAME DIR      venv DIR from NAME.txt (exact pins, every package), reused
#                                     while the lock and the Python version are unchanged
#   landfall_tools_npm NAME DIR       node_modules in DIR from NAME/package-lock.json (npm ci)
#   landfall_tools_report SUITE DIR PACKAGE...
#                                     one line: the versions SUITE runs against
#   landfall_tools_debs PACKAGE...    "name version" of installed Debian packages

LANDFALL_TOOLS_LOCKS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_landfall_tools_stamp() {  # lock file(s) -> a short digest of their content and the Python used
  { cat "$@"; python3 -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16
}

landfall_tools_venv() {
  local name="$1" dir="$2" lock="$LANDFALL_TOOLS_LOCKS/$1.txt" stamp
  [[ -f "$lock" ]] || { echo "tests/tools: no lock $lock" >&2; return 1; }
  stamp="$(_landfall_tools_stamp "$lock")"
  if [[ -x "$dir/bin/python" && "$(cat "$dir/.landfall-lock" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  echo "tests/tools: installing $name.txt into $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" || return 1
  # The lock names every package, so pip installs exactly it: no resolution, no newer release.
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$lock" || return 1
  "$dir/bin/pip" check --disable-pip-version-check >&2 || {
    echo "tests/tools: $name.txt is not a consistent set (pip check above); regenerate it with scripts/update-test-tools" >&2
    return 1
  }
  echo "$stamp" >"$dir/.landfall-lock"
}

landfall_tools_npm() {
  local name="$1" dir="$2" src="$LANDFALL_TOOLS_LOCKS/$1" stamp
  [[ -f "$src/package-lock.json" ]] || { echo "tests/tools: no lock $src/package-lock.json" >&2; return 1; }
  stamp="$(_landfall_tools_stamp "$src/package.json" "$src/package-lock.json")"
  if [[ -d "$dir/node_modules" && "$(cat "$dir/.landfall-lock" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  echo "tests/tools: installing $name (npm ci) into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir" || return 1
  cp "$src/package.json" "$src/package-lock.json" "$dir/" || return 1
  (cd "$dir" && npm ci --silent --no-audit --no-fund) || return 1
  echo "$stamp" >"$dir/.landfall-lock"
}

landfall_tools_report() {
  local suite="$1" dir="$2"
  shift 2
  "$dir/bin/python" - "$suite" "$@" <<'PY'
import importlib.metadata as md, platform, sys
suite, names = sys.argv[1], sys.argv[2:]
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "missing"
print(f"{suite} tools: python {platform.python_version()}, "
      + ", ".join(f"{name} {version(name)}" for name in names))
PY
}

landfall_tools_debs() {
  dpkg-query -W -f='${Package} ${Version}\n' "$@" 2>/dev/null | paste -sd, - | sed 's/,/, /g'
}
