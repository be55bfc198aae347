#!/bin/sh
# Healthy when the application's user can query its database over TCP. The first start's
# initialisation runs the server without networking, before that user and database exist.
MYSQL_PWD=$MARIADB_PASSWORD exec mariadb --protocol=TCP --host=127.0.0.1 --port=3306 \
  --connect-timeout=3 --user="$MARIADB_USER" --database="$MARIADB_DATABASE" \
  --batch --skip-column-names --execute='SELECT 1' >/dev/null
