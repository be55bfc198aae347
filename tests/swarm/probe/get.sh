#!/bin/sh
# get HOST [PORT]: the body of http://HOST:PORT/ (BusyBox's static wget crashes on exit).
printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" | nc -w 3 "$1" "${2:-8080}" | sed '1,/^\r*$/d'
