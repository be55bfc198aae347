#!/bin/bash
# On the first start (an empty data directory): create the system tables, then the database and
# its user from the environment, as the official mariadb image does. Then run the server.
set -euo pipefail

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

die() { echo "db-entrypoint: error: $*" >&2; exit 1; }

# A string as an SQL literal: backslashes and single quotes escaped.
quote() {
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\\\'}"
}

initialise() {
  : "${MARIADB_DATABASE:?MARIADB_DATABASE must be set}"
  : "${MARIADB_USER:?MARIADB_USER must be set}"
  : "${MARIADB_PASSWORD:?MARIADB_PASSWORD must be set}"
  : "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD must be set}"
  [[ $MARIADB_DATABASE =~ ^[A-Za-z0-9_]+$ ]] || die "MARIADB_DATABASE may have only letters, digits and _"
  [[ $MARIADB_USER =~ ^[A-Za-z0-9_]+$ ]] || die "MARIADB_USER may have only letters, digits and _"
  [ "$MARIADB_USER" != root ] || die "MARIADB_USER must not be root"

  echo "db-entrypoint: initialising a new database in $datadir"
  # A failed first start leaves an empty directory, so that the next start tries again.
  trap 'rm -rf "${datadir:?}"/* "${datadir:?}"/.[!.]*' EXIT
  mariadb-install-db --datadir="$datadir" --skip-test-db --skip-name-resolve \
    --auth-root-authentication-method=normal >/dev/null

  # Without networking: nothing can connect before the user exists, and the health check (over
  # TCP) fails until the real server runs.
  mariadbd --skip-networking --socket="$socket" &
  local pid=$!
  local waited=0
  until mariadb-admin --socket="$socket" --user=root --silent ping >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "the server stopped during initialisation"
    [ "$waited" -lt 60 ] || die "the server did not start within 60 s"
    sleep 1
    waited=$((waited + 1))
  done

  # root: by password, or as the OS user root over the socket (docker exec -u root).
  # mysql: the OS user the server runs as, over the socket (docker exec), like Debian's default.
  mariadb --socket="$socket" --user=root --batch <<SQL
DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');
DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost'
  IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD($(quote "$MARIADB_ROOT_PASSWORD"));
CREATE USER 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;
CREATE DATABASE \`$MARIADB_DATABASE\`;
CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY $(quote "$MARIADB_PASSWORD");
GRANT ALL PRIVILEGES ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';
FLUSH PRIVILEGES;
SQL

  kill -TERM "$pid"
  wait "$pid" || die "the server did not stop cleanly after initialisation"
  trap - EXIT
  echo "db-entrypoint: database $MARIADB_DATABASE and user $MARIADB_USER created"
}

if [ "${1:-}" = mariadbd ] && [ ! -d "$datadir/mysql" ]; then
  initialise
fi
exec "$@"
