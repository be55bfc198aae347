#!/bin/bash
# Docker healthcheck: the app answers /health with 200 (no curl, no second Python).
exec 3<>/dev/tcp/127.0.0.1/8000 || exit 1
printf 'GET /health HTTP/1.0\r\n\r\n' >&3
read -r -t 2 status_line <&3 || exit 1
[[ $status_line == *" 200 "* ]]
