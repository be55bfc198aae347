#!/bin/sh
# Answer GET / with this container's hostname (its task's name in a swarm service).
mkdir -p /tmp/www
hostname > /tmp/www/index.html
exec httpd -f -p 8080 -h /tmp/www
