#!/bin/bash
# Docker healthcheck: HAProxy answers its liveness URL (no curl needed in the image).
exec 3<>/dev/tcp/127.0.0.1/8404 || exit 1
printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
read -r -t 2 status_line <&3 || exit 1
[[ $status_line == *" 200 "* ]]
