#!/usr/bin/env bash
# Installs the test suites' tools from the locks in this folder (see README.md here). Sourced by
# each suite's run.sh; defines functions and changes no shell options.
#
#   landfall_tools_venv NAME DIR      venv DIR from NAME.txt (exact pins, every package), reused
#                                     while the lock and the Python version are unchanged;
#                                     installed by uv (the version pinned in uv.txt, itself
#                                     installed by pip into .tools/uv), about 4 times faster than
#                                     pip; LANDFALL_TOOLS_INSTALLER=pip installs with pip instead
#   landfall_tools_npm NAME DIR       node_modules in DIR from NAME/package-lock.json (npm ci)
#   landfall_tools_report SUITE DIR PACKAGE...
#                                     one line: the versions SUITE runs against
#   landfall_tools_debs PACKAGE...    "name version" of installed Debian packages

LANDFALL_TOOLS_LOCKS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_landfall_tools_stamp() {  # lock file(s) -> a short digest of their content and the Python used
  { cat "$@"; python3 -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16
}

# Two suites may install the same venv at once (the image suite's background build runs beside
# the other suites, and all of them need .tools/uv): one installs, the other waits for it.
landfall_tools_venv() {
  mkdir -p "$(dirname "$2")" || return 1
  ( flock 9 || exit 1; _landfall_tools_venv_unlocked "$@" ) 9>"$2.install-lock"
}

_landfall_tools_venv_unlocked() {
  local name="$1" dir="$2" lock="$LANDFALL_TOOLS_LOCKS/$1.txt" stamp
  [[ -f "$lock" ]] || { echo "tests/tools: no lock $lock" >&2; return 1; }
  stamp="$(_landfall_tools_stamp "$lock")"
  if [[ -x "$dir/bin/python" && "$(cat "$dir/.landfall-lock" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  local installer="${LANDFALL_TOOLS_INSTALLER:-uv}" uv="" started=$SECONDS
  [[ "$name" == uv ]] && installer=pip  # uv itself comes from pip
  case "$installer" in
    uv) uv="$(_landfall_tools_uv)" || return 1 ;;
    pip) ;;
    *) echo "tests/tools: LANDFALL_TOOLS_INSTALLER must be uv or pip, not '$installer'" >&2; return 1 ;;
  esac
  echo "tests/tools: installing $name.txt into $dir ($installer)" >&2
  rm -rf "$dir"
  # A venv of the machine's python3 with its own pip either way, so the venv looks the same
  # whichever installer filled it (scripts/update-test-tools freezes with that pip).
  python3 -m venv "$dir" || return 1
  # The lock names every package, so the installer installs exactly it: no resolution, no
  # newer release. uv compiles the bytecode up front as pip does (the suites run with
  # PYTHONDONTWRITEBYTECODE=1, so a missing .pyc would be compiled again in every process),
  # and --no-cache leaves no second copy of the packages on disk.
  if [[ "$installer" == uv ]]; then
    "$uv" pip install --quiet --no-cache --compile-bytecode --python "$dir/bin/python" --no-deps -r "$lock" || return 1
  else
    "$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$lock" || return 1
  fi
  "$dir/bin/pip" check --disable-pip-version-check >&2 || {
    echo "tests/tools: $name.txt is not a consistent set (pip check above); regenerate it with scripts/update-test-tools" >&2
    return 1
  }
  echo "$stamp" >"$dir/.landfall-lock"
  echo "tests/tools: installed $name.txt in $((SECONDS - started)) s" >&2
}

# The uv binary that installs the locks: tests/tools/uv.txt in .tools/uv (pip, a few seconds).
_landfall_tools_uv() {
  local dir
  dir="$(cd "$LANDFALL_TOOLS_LOCKS/../.." && pwd)/.tools/uv"
  landfall_tools_venv uv "$dir" >&2 || { echo "tests/tools: installing uv (tests/tools/uv.txt) failed" >&2; return 1; }
  echo "$dir/bin/uv"
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
