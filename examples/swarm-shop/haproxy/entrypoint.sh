#!/bin/sh
# HAProxy replica of a Swarm stack: write the map files, then run HAProxy.
#
# The live colour and each colour's release live in each replica's memory (the deploy sets them
# through every replica's runtime API). A replica that starts while others run (restarted,
# rescheduled, a node back) takes them from the first running peer that answers with a valid
# colour: the other addresses of tasks.<this service> on the overlay network, runtime API on
# port 9999. With no peer (the stack's first start), BLUEGREEN_START_COLOUR and no releases.
set -eu

CONFIG=/usr/local/etc/haproxy/haproxy.cfg
ACTIVE_MAP=/tmp/active.map
RELEASES_MAP=/tmp/releases.map
PEERS=${BLUEGREEN_PEERS:-tasks.loadbalancer}
ADMIN_PORT_IN_CONTAINER=9999

log() { echo "haproxy-entrypoint: $*" >&2; }

valid_colour() {
  case $1 in
    blue | green) return 0 ;;
    *) return 1 ;;
  esac
}

# This container's own IPv4 addresses (the local /32 routes of its interfaces).
own_addresses() {
  awk '/32 host LOCAL/ { print prev } { prev = $2 }' /proc/net/fib_trie | sort -u
}

peer_addresses() {
  timeout 5 getent ahostsv4 "$PEERS" 2>/dev/null | awk '{ print $1 }' | sort -u || true
}

# One runtime API command to a peer, its answer on stdout ("" when it does not answer).
ask() {
  echo "$2" | timeout 4 socat -t 2 - "TCP:$1:$ADMIN_PORT_IN_CONTAINER,connect-timeout=2" \
    2>/dev/null || true
}

colour=""
releases=""
own=$(own_addresses)
for peer in $(peer_addresses); do
  if printf '%s\n' "$own" | grep -qxF "$peer"; then
    continue
  fi
  # "show map" lines: <entry id> <key> <value>.
  answer=$(ask "$peer" "show map $ACTIVE_MAP" | awk '$2 == "active" { print $3; exit }')
  if valid_colour "$answer"; then
    colour=$answer
    releases=$(ask "$peer" "show map $RELEASES_MAP" |
      awk '($2 == "blue" || $2 == "green") && $3 ~ /^[A-Za-z0-9._:+-]+$/ { print $2, $3 }')
    log "adopted from peer $peer: live colour $colour, releases: $(printf '%s' "$releases" | tr '\n' ' ')"
    break
  fi
done

if [ -z "$colour" ]; then
  colour=${BLUEGREEN_START_COLOUR:-blue}
  valid_colour "$colour" || {
    log "error: BLUEGREEN_START_COLOUR=$colour is not blue or green"
    exit 1
  }
  log "no running peer answered: live colour $colour (BLUEGREEN_START_COLOUR)"
fi

printf 'active %s\n' "$colour" >"$ACTIVE_MAP"
if [ -n "$releases" ]; then
  printf '%s\n' "$releases" >"$RELEASES_MAP"
else
  : >"$RELEASES_MAP"
fi

exec haproxy -W -db -f "$CONFIG"
