#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers for the database suite (tests/database/run.sh) and the
# database benchmark (bench/database/run): each in a fresh data directory under a run directory,
# run by an unprivileged user, listening on a free 127.0.0.1 port only, with a database
# `landfall` and a login `landfall` (random password) that may create tables, roles and users.
# Sourced; defines functions and changes no shell options. Needs root (apt, runuser, and
# mariadbd --user), as the other suites' installs do.
#
#   landfall_db_install                  apt-get install postgresql / mariadb-server if missing
#   landfall_db_tls RUN_DIR              a throwaway CA and server certificate (openssl) under
#                                        RUN_DIR/tls: servers started after it serve TLS with
#                                        them; exports LANDFALL_TEST_TLS_* (below)
#   landfall_db_start_postgres RUN_DIR   initdb + start; exports LANDFALL_TEST_POSTGRES_* (below)
#   landfall_db_start_mysql RUN_DIR      mariadb-install-db + start; exports LANDFALL_TEST_MYSQL_*
#   landfall_db_stop RUN_DIR             stop every server under RUN_DIR by PID (TERM/INT, then KILL)
#   landfall_db_versions                 one line: server and client versions (servers running)
#
# What a started server exports (PID and port are those of the current process; a restart keeps
# the port and data directory and prints the new PID):
#   LANDFALL_TEST_POSTGRES_URL      postgres://landfall:PW@127.0.0.1:PORT/landfall
#   LANDFALL_TEST_POSTGRES_PID      the postmaster's PID
#   LANDFALL_TEST_POSTGRES_DATA     its data directory (owned by postgres)
#   LANDFALL_TEST_PG_CTL            pg_ctl's path; pg_ctl refuses root: run it as
#                                   `runuser -u postgres -- "$LANDFALL_TEST_PG_CTL" ... -D DATA`
#   LANDFALL_TEST_POSTGRES_RESTART  script: restart [fast|immediate|kill]; prints the new PID
#   LANDFALL_TEST_MYSQL_URL         mysql://landfall:PW@127.0.0.1:PORT/landfall
#   LANDFALL_TEST_MYSQL_PID         mariadbd's PID
#   LANDFALL_TEST_MYSQL_DATA        its data directory (owned by mysql)
#   LANDFALL_TEST_MYSQL_RESTART     script: restart [fast|kill]; prints the new PID
# and, after landfall_db_tls (the servers then take TLS and plain TCP on the same port):
#   LANDFALL_TEST_TLS_CA            the CA (PEM) that signed both servers' certificate, whose
#                                   only name is the IP address 127.0.0.1 (not `localhost`)
#   LANDFALL_TEST_TLS_OTHER_CA      another CA (PEM), which signed nothing the servers serve
# A server's TLS files are copied into its directory (RUN_DIR/postgres/tls, RUN_DIR/mariadb/tls,
# owned by its user); a restart serves TLS while that directory exists, plain TCP once it is
# removed.

_landfall_db_helper="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/servers.sh"

_landfall_db_log() { printf 'database: %s\n' "$*" >&2; }

_landfall_db_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# 32 hex characters: safe in a URL without escaping.
_landfall_db_password() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# The newest PostgreSQL server installed from Debian packages (not the /usr/local/bin links some
# machines have); LANDFALL_PG_BINDIR overrides.
landfall_db_pg_bindir() {
  if [[ -n "${LANDFALL_PG_BINDIR:-}" ]]; then
    echo "$LANDFALL_PG_BINDIR"
    return
  fi
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/postgres" ]] && echo "$dir"
}

landfall_db_install() {
  local packages=()
  [[ -n "$(landfall_db_pg_bindir)" ]] || packages+=(postgresql)
  [[ -x /usr/sbin/mariadbd ]] || command -v mariadbd >/dev/null || packages+=(mariadb-server)
  command -v mariadb >/dev/null || packages+=(mariadb-client)
  if [[ ${#packages[@]} -gt 0 ]]; then
    _landfall_db_log "installing ${packages[*]}"
    # Debian's maintainer scripts would start the packaged services; policy-rc.d (present in
    # containers) refuses that, and nothing here needs them.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    } || { _landfall_db_log "apt-get install ${packages[*]} failed"; return 1; }
  fi
  [[ -n "$(landfall_db_pg_bindir)" ]] || { _landfall_db_log "no PostgreSQL under /usr/lib/postgresql after install"; return 1; }
}

_landfall_db_ensure_user() {  # NAME: a system user to run a server as
  id -u "$1" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$1"
}

_landfall_db_pid_alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# _landfall_db_wait_dead PID SECONDS: 0 once PID is gone.
_landfall_db_wait_dead() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    _landfall_db_pid_alive "$1" || return 0
    sleep 0.1
  done
  return 1
}

# _landfall_db_kill PID SIGNAL SECONDS: SIGNAL, then KILL after SECONDS; returns once it is gone.
_landfall_db_kill() {
  local pid="$1"
  _landfall_db_pid_alive "$pid" || return 0
  kill -s "$2" "$pid" 2>/dev/null || true
  _landfall_db_wait_dead "$pid" "$3" && return 0
  _landfall_db_log "pid $pid did not stop within $3 s of SIG$2; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  _landfall_db_wait_dead "$pid" 10
}

# ---- TLS ----------------------------------------------------------------------------------
# Under RUN_DIR/tls: ca.crt/ca.key (the CA), other-ca.crt (a second CA), server.crt/server.key
# (signed by the CA, subjectAltName IP:127.0.0.1 only). ECDSA P-256 keys, valid for two days.

landfall_db_tls() {
  local run="$1" dir="$1/tls"
  command -v openssl >/dev/null || { _landfall_db_log "openssl is not installed"; return 1; }
  mkdir -p "$dir" && chmod 700 "$dir" || return 1
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  local ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
  {
    openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 2 \
      -subj "/CN=Landfall test CA" "${ca_ext[@]}" &&
      openssl req -x509 "${ec[@]}" -keyout "$dir/other-ca.key" -out "$dir/other-ca.crt" -days 2 \
        -subj "/CN=Landfall other test CA" "${ca_ext[@]}" &&
      openssl req "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" &&
      printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$dir/server.ext" &&
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt"
  } >"$dir/openssl.log" 2>&1 || { _landfall_db_log "openssl failed:"; tail -n 10 "$dir/openssl.log" >&2; return 1; }
  export LANDFALL_TEST_TLS_CA="$dir/ca.crt"
  export LANDFALL_TEST_TLS_OTHER_CA="$dir/other-ca.crt"
  _landfall_db_log "TLS on: CA $LANDFALL_TEST_TLS_CA, server certificate for IP 127.0.0.1"
}

# _landfall_db_tls_copy RUN_DIR DIR USER: the server certificate and key into DIR/tls, readable
# by USER only (PostgreSQL refuses a key others can read); nothing without landfall_db_tls.
_landfall_db_tls_copy() {
  [[ -f "$1/tls/server.crt" ]] || return 0
  mkdir -p "$2/tls" &&
    cp "$1/tls/ca.crt" "$1/tls/server.crt" "$1/tls/server.key" "$2/tls/" &&
    chown -R "$3": "$2/tls" && chmod 700 "$2/tls" && chmod 600 "$2/tls/server.key"
}

# ---- PostgreSQL ---------------------------------------------------------------------------
# Layout under RUN_DIR/postgres (owned by postgres): data/, sock/ (the Unix socket), port,
# postgres.log, restart.

_landfall_db_pg_pid() { head -n 1 "$1/data/postmaster.pid" 2>/dev/null; }

# _landfall_db_pg_launch DIR: start on the recorded port, wait until it accepts connections.
_landfall_db_pg_launch() {
  local dir="$1" bindir port tls=""
  bindir="$(landfall_db_pg_bindir)"
  port="$(cat "$dir/port")"
  [[ -f "$dir/tls/server.crt" ]] &&
    tls=" -c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key"
  # -w waits for the postmaster.pid "ready" state; -l sends the server's output to the log, so
  # a caller reading this function's stdout (a test running the restart script) does not wait
  # for the server to close it.
  runuser -u postgres -- "$bindir/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -s \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock$tls" </dev/null >/dev/null
}

# _landfall_db_pg_restart DIR [fast|immediate|kill]: stop (or SIGKILL) the running server and
# start it again on the same port and data; prints the new PID.
_landfall_db_pg_restart() {
  local dir="$1" mode="${2:-fast}" pid i
  pid="$(_landfall_db_pg_pid "$dir")"
  case "$mode" in
    fast) _landfall_db_kill "$pid" INT 30 ;;
    immediate) _landfall_db_kill "$pid" QUIT 30 ;;
    kill) _landfall_db_kill "$pid" KILL 10 ;;
    *) _landfall_db_log "restart mode must be fast, immediate or kill, not '$mode'"; return 2 ;;
  esac
  # After a SIGKILL the postmaster's children notice its death and exit on their own; until they
  # have, the new postmaster refuses the old shared memory: retry for a while.
  for ((i = 0; i < 50; i++)); do
    if _landfall_db_pg_launch "$dir" 2>>"$dir/restart.err"; then
      _landfall_db_pg_pid "$dir"
      return 0
    fi
    sleep 0.2
  done
  _landfall_db_log "PostgreSQL did not come back; log: $dir/postgres.log"
  tail -n 20 "$dir/postgres.log" >&2
  return 1
}

landfall_db_start_postgres() {
  local run="$1" dir="$1/postgres" bindir password attempt port
  bindir="$(landfall_db_pg_bindir)" || { _landfall_db_log "PostgreSQL is not installed"; return 1; }
  _landfall_db_ensure_user postgres || return 1
  chmod 711 "$run"
  mkdir -p "$dir/sock"
  _landfall_db_tls_copy "$run" "$dir" postgres || return 1
  chown -R postgres: "$dir"
  chmod 700 "$dir"
  # Unix-socket connections are trusted (the set-up below runs over them, as postgres); every
  # TCP connection needs a password, checked with SCRAM-SHA-256 (PostgreSQL 15's default).
  runuser -u postgres -- "$bindir/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 </dev/null || {
    _landfall_db_log "initdb failed:"; tail -n 20 "$dir/initdb.log" >&2; return 1
  }
  for attempt in 1 2 3; do
    port="$(_landfall_db_free_port)" || return 1
    echo "$port" >"$dir/port"
    _landfall_db_pg_launch "$dir" && break
    _landfall_db_log "PostgreSQL start attempt $attempt on port $port failed"
    tail -n 5 "$dir/postgres.log" >&2
    [[ $attempt -lt 3 ]] || return 1
  done
  password="$(_landfall_db_password)"
  "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 <<SQL >/dev/null || return 1
CREATE ROLE landfall LOGIN SUPERUSER PASSWORD '$password';
CREATE DATABASE landfall OWNER landfall;
SQL
  cat >"$dir/restart" <<EOF
#!/usr/bin/env bash
# Restarts the test PostgreSQL on 127.0.0.1:$port (data: $dir/data) and prints its new PID.
# Usage: restart [fast|immediate|kill]  (kill: SIGKILL the postmaster first, as a crash would)
source "$_landfall_db_helper"
_landfall_db_pg_restart "$dir" "\${1:-fast}"
EOF
  chmod 755 "$dir/restart"
  export LANDFALL_TEST_POSTGRES_URL="postgres://landfall:$password@127.0.0.1:$port/landfall"
  export LANDFALL_TEST_POSTGRES_PID="$(_landfall_db_pg_pid "$dir")"
  export LANDFALL_TEST_POSTGRES_DATA="$dir/data"
  export LANDFALL_TEST_PG_CTL="$bindir/pg_ctl"
  export LANDFALL_TEST_POSTGRES_RESTART="$dir/restart"
  _landfall_db_log "PostgreSQL listening on 127.0.0.1:$port (pid $LANDFALL_TEST_POSTGRES_PID)"
}

# ---- MariaDB ------------------------------------------------------------------------------
# Layout under RUN_DIR/mariadb: data/ (owned by mysql), mysqld.sock, mysqld.pid, port,
# mariadb.log, restart. root connects over the socket (unix_socket authentication).

_landfall_db_mysql_pid() { cat "$1/mysqld.pid" 2>/dev/null; }

_landfall_db_mysql_admin() {  # DIR ARGS...: mariadb-admin as root over the socket
  local dir="$1"; shift
  mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot --connect-timeout=2 "$@"
}

# _landfall_db_mysql_launch DIR: start on the recorded port, wait until it answers a ping.
_landfall_db_mysql_launch() {
  local dir="$1" port pid i mariadbd tls=()
  port="$(cat "$dir/port")"
  mariadbd="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
  [[ -f "$dir/tls/server.crt" ]] &&
    tls=(--ssl-ca="$dir/tls/ca.crt" --ssl-cert="$dir/tls/server.crt" --ssl-key="$dir/tls/server.key")
  rm -f "$dir/mysqld.pid"
  # mariadbd drops to --user before it opens any file. --no-defaults: nothing from
  # /etc/mysql/ (its socket and pid paths belong to the packaged service). The server's
  # output goes to its log, never to the caller's stdout (see _landfall_db_pg_launch).
  "$mariadbd" --no-defaults --user=mysql --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" --bind-address=127.0.0.1 --port="$port" --skip-networking=0 \
    --skip-name-resolve --log-error="$dir/mariadb.log" "${tls[@]}" </dev/null >>"$dir/mariadb.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    if ! _landfall_db_pid_alive "$pid"; then
      _landfall_db_log "mariadbd exited during start-up; log: $dir/mariadb.log"
      tail -n 10 "$dir/mariadb.log" >&2
      return 1
    fi
    if [[ -s "$dir/mysqld.pid" ]] && _landfall_db_mysql_admin "$dir" ping >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  _landfall_db_log "mariadbd did not answer within 60 s; log: $dir/mariadb.log"
  _landfall_db_kill "$pid" KILL 0
  return 1
}

# _landfall_db_mysql_restart DIR [fast|kill]: stop (or SIGKILL) the running server and start
# it again on the same port and data; prints the new PID.
_landfall_db_mysql_restart() {
  local dir="$1" mode="${2:-fast}" pid
  pid="$(_landfall_db_mysql_pid "$dir")"
  case "$mode" in
    fast) _landfall_db_kill "$pid" TERM 60 ;;
    kill) _landfall_db_kill "$pid" KILL 10 ;;
    *) _landfall_db_log "restart mode must be fast or kill, not '$mode'"; return 2 ;;
  esac
  _landfall_db_mysql_launch "$dir" || return 1
  _landfall_db_mysql_pid "$dir"
}

landfall_db_start_mysql() {
  local run="$1" dir="$1/mariadb" password attempt port
  _landfall_db_ensure_user mysql || return 1
  chmod 711 "$run"
  mkdir -p "$dir"
  _landfall_db_tls_copy "$run" "$dir" mysql || return 1
  chown mysql: "$dir"
  chmod 700 "$dir"
  # Runs the bootstrap server as mysql. --skip-test-db: no `test` database, and no anonymous
  # accounts (they would outrank 'landfall'@'%' for some connections).
  mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" --skip-test-db \
    --skip-name-resolve --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 </dev/null || {
    _landfall_db_log "mariadb-install-db failed:"; tail -n 20 "$dir/install.log" >&2; return 1
  }
  for attempt in 1 2 3; do
    port="$(_landfall_db_free_port)" || return 1
    echo "$port" >"$dir/port"
    _landfall_db_mysql_launch "$dir" && break
    _landfall_db_log "MariaDB start attempt $attempt on port $port failed"
    [[ $attempt -lt 3 ]] || return 1
  done
  password="$(_landfall_db_password)"
  mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot <<SQL || return 1
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE DATABASE landfall;
CREATE USER 'landfall'@'127.0.0.1' IDENTIFIED BY '$password';
CREATE USER 'landfall'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'landfall'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'landfall'@'%' WITH GRANT OPTION;
SQL
  cat >"$dir/restart" <<EOF
#!/usr/bin/env bash
# Restarts the test MariaDB on 127.0.0.1:$port (data: $dir/data) and prints its new PID.
# Usage: restart [fast|kill]  (kill: SIGKILL mariadbd first, as a crash would)
source "$_landfall_db_helper"
_landfall_db_mysql_restart "$dir" "\${1:-fast}"
EOF
  chmod 755 "$dir/restart"
  export LANDFALL_TEST_MYSQL_URL="mysql://landfall:$password@127.0.0.1:$port/landfall"
  export LANDFALL_TEST_MYSQL_PID="$(_landfall_db_mysql_pid "$dir")"
  export LANDFALL_TEST_MYSQL_DATA="$dir/data"
  export LANDFALL_TEST_MYSQL_RESTART="$dir/restart"
  _landfall_db_log "MariaDB listening on 127.0.0.1:$port (pid $LANDFALL_TEST_MYSQL_PID)"
}

# ---- both ---------------------------------------------------------------------------------

# Stops what runs under RUN_DIR, whatever a test did to it: the PIDs come from the servers'
# own pid files (a restart changes them) and from the ones exported at start.
# A PID is signalled only while its command line names RUN_DIR (a PID freed by a restart may
# have been reused).
_landfall_db_runs_under() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$2/"; }

landfall_db_stop() {
  local run="$1" pid
  for pid in "$(_landfall_db_pg_pid "$run/postgres")" "${LANDFALL_TEST_POSTGRES_PID:-}"; do
    _landfall_db_runs_under "$pid" "$run" || continue
    _landfall_db_kill "$pid" INT 20  # PostgreSQL's fast shutdown
  done
  for pid in "$(_landfall_db_mysql_pid "$run/mariadb")" "${LANDFALL_TEST_MYSQL_PID:-}"; do
    _landfall_db_runs_under "$pid" "$run" || continue
    _landfall_db_kill "$pid" TERM 30
  done
}

# One line: the servers' versions (asked over TCP as landfall, so it also proves the login works)
# and the Debian packages they come from.
landfall_db_versions() {
  local pg my
  local psql
  psql="$(landfall_db_pg_bindir)/psql"
  pg="$("$psql" "${LANDFALL_TEST_POSTGRES_URL:?}" -X -At -c 'show server_version' 2>&1)" || { _landfall_db_log "psql: $pg"; return 1; }
  my="$(_landfall_db_mysql_url_client "${LANDFALL_TEST_MYSQL_URL:?}" -N -B -e 'select version()' 2>&1)" || { _landfall_db_log "mariadb: $my"; return 1; }
  echo "database tools: PostgreSQL $pg, MariaDB $my, psql $("$psql" --version | awk '{print $3}'), $(mariadb --version | sed 's/,.*//')," \
    "debs: $(dpkg-query -W -f='${Package} ${Version}\n' "postgresql-$(basename "$(dirname "$(landfall_db_pg_bindir)")")" mariadb-server 2>/dev/null | paste -sd, - | sed 's/,/, /g')"
}

# _landfall_db_mysql_url_client URL ARGS...: the mariadb client, connected as URL says (the
# password through MYSQL_PWD, not the command line).
_landfall_db_mysql_url_client() {
  local url="$1" rest userpass hostport
  shift
  rest="${url#mysql://}"
  userpass="${rest%%@*}"
  rest="${rest#*@}"
  hostport="${rest%%/*}"
  MYSQL_PWD="${userpass#*:}" mariadb --no-defaults --protocol=tcp -h "${hostport%:*}" -P "${hostport##*:}" \
    -u "${userpass%%:*}" "${rest#*/}" "$@"
}
