#!/bin/sh
# A swarm node's engine. The local registry answers on the host as 127.0.0.1:45000; forwarding
# the node's own 127.0.0.1:45000 to it (alias "registry" on the cluster's bridge network) makes
# an image reference 127.0.0.1:45000/<name>:<tag> mean the same registry on the host and on every
# node, with no insecure-registry setting anywhere (a registry on localhost is trusted).
set -eu

socat TCP-LISTEN:45000,bind=127.0.0.1,fork,reuseaddr TCP:registry:5000 &

# The engine answers on plain TCP 2375 without TLS. Acceptable here only because that port is
# reachable on nothing but the cluster's private bridge network on this machine (the node
# containers publish no port on the host). --tls=false says so explicitly, which also spares the
# 15 s that dockerd otherwise sleeps at start to warn about an unauthenticated TCP socket.
exec dockerd \
    -H unix:///var/run/docker.sock \
    -H tcp://0.0.0.0:2375 \
    --tls=false \
    "$@"
