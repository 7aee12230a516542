#!/usr/bin/env bash
# The database suite (tests/it/database.rs) against real servers: PostgreSQL 15 and MariaDB
# 10.11 from Debian's packages (installed on first use), each initialised into a fresh temporary
# data directory, run by an unprivileged user (postgres, mysql) on a free 127.0.0.1 port, and
# stopped by PID when the suite ends, however it ends (tests/database/servers.sh).
#
#   tests/database/run.sh            # what `scripts/test integration` runs
#   tests/database/run.sh NAME       # only database tests whose name contains NAME
#   tests/database/run.sh dbt        # only the dbt build over the PostgreSQL example
#   tests/database/run.sh fault      # only the fault-injection cases (tests/it/database/faults.rs
#                                    # and the xmin one): seeded SIGKILLs mid-chunk and reruns,
#                                    # LANDFALL_FAULT_TRIALS kills per case (8), LANDFALL_FAULT_SEED
#
# Last, tests/dbt/test_database_source.py: config-examples/postgres.yaml landed from this
# PostgreSQL, `landfall dbt-sources --staging` and `dbt build` with the project's tests (about
# 1 min; the dbt venv .tools/dbt is the one tests/airflow/run.sh and tests/dbt/run.sh install
# from tests/tools/dbt.txt, reused when present).
#
# The tests are ignored under a plain `cargo test` and fail without the servers; they find them
# through LANDFALL_TEST_{POSTGRES,MYSQL}_{URL,PID,DATA,RESTART} and LANDFALL_TEST_PG_CTL
# (described in servers.sh). Both servers serve TLS with a certificate for 127.0.0.1 signed by
# a throwaway CA (LANDFALL_TEST_TLS_CA; LANDFALL_TEST_TLS_OTHER_CA signed nothing). The tests
# whose name contains `server_restart`, and the `postgres_xmin` tests, run alone after the others
# (they restart a server, or need no other transaction open); those
# whose name contains `without_tls` run last, after MariaDB is restarted without TLS (about 2 s;
# one server each keeps the suite short). Both logins are `landfall` with a random password and may create
# tables, roles and users; TCP connections need the password (PostgreSQL: SCRAM-SHA-256).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
started=$SECONDS

[[ $(id -u) -eq 0 ]] || { echo "database: run as root (apt-get, runuser and mariadbd --user need it)" >&2; exit 1; }

# shellcheck source=servers.sh
source "$root/tests/database/servers.sh"
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/landfall-database.XXXXXX")

cleanup() {
  local status=$?
  landfall_db_stop "$run_dir"
  if [[ $status -ne 0 ]]; then
    for log in "$run_dir"/postgres/postgres.log "$run_dir"/mariadb/mariadb.log; do
      [[ -s "$log" ]] || continue
      echo "--- $(basename "$log") (last lines)" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$run_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

landfall_db_install
landfall_db_tls "$run_dir"
landfall_db_start_postgres "$run_dir"
landfall_db_start_mysql "$run_dir"
landfall_db_versions

# Smoke: the logins work over TCP (landfall_db_versions above), and a wrong password is refused
# on both, so the tests run against servers that check passwords.
wrong_pg="${LANDFALL_TEST_POSTGRES_URL/landfall:*@/landfall:wrong@}"
if "$(landfall_db_pg_bindir)/psql" "$wrong_pg" -X -At -c 'select 1' >/dev/null 2>&1; then
  echo "database: PostgreSQL accepted a wrong password" >&2
  exit 1
fi
wrong_my="${LANDFALL_TEST_MYSQL_URL/landfall:*@/landfall:wrong@}"
if _landfall_db_mysql_url_client "$wrong_my" -e 'select 1' >/dev/null 2>&1; then
  echo "database: MariaDB accepted a wrong password" >&2
  exit 1
fi
echo "database: servers ready in $((SECONDS - started)) s" >&2

# The database tests are the `database::` module of the one integration-test binary; NAME picks
# those of them whose name contains it.
tests=()
if [[ ${1:-} != dbt ]]; then
  mapfile -t tests < <(cargo test --locked --quiet --test it -- --ignored --list database:: 2>/dev/null \
    | sed -n 's/: test$//p' | grep -F -- "${1:-database::}")
  [[ ${#tests[@]} -gt 0 ]] || { echo "database: no database test name contains '${1:-database::}'" >&2; exit 1; }
fi
with_tls=() alone=() without_tls=()
for name in "${tests[@]}"; do
  case $name in
    *without_tls*) without_tls+=("$name") ;;
    *server_restart*|*postgres_xmin::*) alone+=("$name") ;;
    *) with_tls+=("$name") ;;
  esac
done
if [[ ${#with_tls[@]} -gt 0 ]]; then
  nice -n 10 cargo test --locked --test it -- --ignored --test-threads 2 --exact "${with_tls[@]}"
fi
# A server restart ends every session on that server, and the xmin tests assert which
# transactions a snapshot saw (another test's open transaction would lower its xmin): these tests
# run alone, one at a time.
if [[ ${#alone[@]} -gt 0 ]]; then
  nice -n 10 cargo test --locked --test it -- --ignored --test-threads 1 --exact "${alone[@]}"
fi
if [[ $# -eq 0 || $1 == dbt ]]; then
  # shellcheck source=../tools/tools.sh
  source "$root/tests/tools/tools.sh"
  landfall_tools_venv dbt "$root/.tools/dbt" || { echo "database: installing tests/tools/dbt.txt failed" >&2; exit 1; }
  cargo build --locked --quiet
  dbt_started=$SECONDS
  LANDFALL_BIN="${LANDFALL_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/landfall}" PYTHONDONTWRITEBYTECODE=1 \
    nice -n 10 "$root/.tools/dbt/bin/python" -m pytest tests/dbt/test_database_source.py -q -rs -p no:cacheprovider
  echo "database: dbt build over the PostgreSQL example in $((SECONDS - dbt_started)) s" >&2
fi
if [[ ${#without_tls[@]} -gt 0 ]]; then
  rm -rf "$run_dir/mariadb/tls"
  LANDFALL_TEST_MYSQL_PID="$("$LANDFALL_TEST_MYSQL_RESTART" fast)"
  echo "database: MariaDB restarted without TLS (pid $LANDFALL_TEST_MYSQL_PID)" >&2
  nice -n 10 cargo test --locked --test it -- --ignored --test-threads 2 --exact "${without_tls[@]}"
fi
echo "database: suite finished in $((SECONDS - started)) s" >&2
