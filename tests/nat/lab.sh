#!/usr/bin/env bash
# NAT lab: a STUN server on two public addresses and one client behind each kind of NAT
# (RFC 4787 terms), all in network namespaces with no link to the root namespace, so
# nothing reaches or leaves the machine. Topology and NAT rules: docs/nat-lab.md.
#
#   tests/nat/lab.sh probe [OUTDIR]     build a lab, run `switchboard nat-probe` in every
#                                       client, print what it said, remove the lab; with
#                                       OUTDIR also KIND.json / KIND.txt / KIND.rc there
#   tests/nat/lab.sh run CMD [ARG...]   build a lab, run CMD with NATLAB_* set (below),
#                                       remove the lab; exits with CMD's status
#   tests/nat/lab.sh create             build a lab and leave it up; prints its id
#   tests/nat/lab.sh destroy ID|--all   remove a lab made by `create` (--all: every one)
#
# Environment for CMD: NATLAB_ID, NATLAB_KINDS (open fullcone restricted symmetric fw443),
# NATLAB_NS_<KIND> (the client namespace, e.g. NATLAB_NS_FULLCONE), NATLAB_PUB (server
# namespace), NATLAB_SERVER_IP (203.0.113.1), NATLAB_OTHER_IP (203.0.113.2), SWITCHBOARD_BIN.
# Example: tests/nat/lab.sh run sh -c 'ip netns exec $NATLAB_NS_SYMMETRIC $SWITCHBOARD_BIN nat-probe --server 203.0.113.1'
#
# Settings: SWITCHBOARD_BIN (default target/debug/switchboard; must exist),
# NATLAB_SERVER=switchboard (default), coturn (turnserver with the same two IPs) or none
# (CMD starts its own server in NATLAB_PUB), NATLAB_TWINS=1 (a second client behind a
# second NAT of every kind: NATLAB_NS_<KIND>_B, for calls between two NATs of one kind).
# Needs root, iproute2 and iptables. Every run uses fresh names (nl<random>-*) and removes
# what it made on exit, failure or Ctrl-C; processes in its namespaces are ended by PID.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_ROOT=/run/switchboard-natlab
KINDS="open fullcone restricted symmetric fw443"
SERVER_IP=203.0.113.1
OTHER_IP=203.0.113.2

die() { echo "nat lab: $*" >&2; exit 2; }

preflight() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces and iptables): run it with sudo"
  for t in ip iptables ss; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t (apt-get install iproute2 iptables)"
  done
  BIN="${SWITCHBOARD_BIN:-$ROOT/target/debug/switchboard}"
  case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
  [ -x "$BIN" ] || die "no switchboard binary at $BIN (cargo build -p switchboard, or set SWITCHBOARD_BIN)"
  SERVER_KIND="${NATLAB_SERVER:-switchboard}"
  case "$SERVER_KIND" in
    switchboard) ;;
    coturn) command -v turnserver >/dev/null 2>&1 || die "NATLAB_SERVER=coturn needs turnserver (apt-get install coturn)" ;;
    none) ;;
    *) die "NATLAB_SERVER must be switchboard, coturn or none" ;;
  esac
}

# Every namespace of lab $1, found by its unique prefix.
lab_namespaces() { ip netns list | awk '{print $1}' | grep -E "^$1-" || true; }

destroy_lab() {
  local id=$1 state="$STATE_ROOT/$1" pid ns sig
  set +e
  if [ -f "$state/server.pid" ]; then
    pid=$(cat "$state/server.pid")
    kill -TERM "$pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  fi
  # Anything else still running in this lab's namespaces was started in them by this lab.
  for ns in $(lab_namespaces "$id"); do
    for sig in TERM KILL; do
      pid=$(ip netns pids "$ns" 2>/dev/null)
      [ -z "$pid" ] && break
      kill -s "$sig" $pid 2>/dev/null
      sleep 0.3
    done
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "$state"
  set -e
}

# A veth from namespace $1 (named wan there, address $3) into the public bridge (port $2).
attach() {
  local ns=$1 port=$2 addr=$3
  ip -n "$ns" link add wan type veth peer name "$port" netns "$PUB"
  # No IPv6 link-local address (the lab is IPv4): one appearing after DAD, a second or
  # two after `up`, is a network change to a Chromium already running in the namespace,
  # which aborts its requests in flight (net::ERR_NETWORK_CHANGED).
  ip -n "$ns" link set wan addrgenmode none
  ip -n "$PUB" link set "$port" master br0 up
  ip -n "$ns" addr add "$addr/24" dev wan
  ip -n "$ns" link set wan up
}

# A namespace with lo up and its own resolv.conf (`ip netns exec` bind-mounts
# /etc/netns/NS/*), so a browser's DNS lookups fail at once inside the lab instead of
# going to the host's resolver address.
newns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  mkdir -p "/etc/netns/$1"
  echo "nameserver 127.0.0.1" >"/etc/netns/$1/resolv.conf"
}

# Client namespace $ID-$name behind router namespace $ID-$name-nat, where $name is the
# kind, or kind-b for the twin; $n numbers the public (203.0.113.10+n) and the private
# (10.0.n.0/24) addresses, all different so host candidates never collide.
nat_client() {
  local kind=$1 n=$2 name=${3:-$1} r="$ID-${3:-$1}-nat" c="$ID-${3:-$1}"
  local wan="203.0.113.$((10 + n))" lan="10.0.$n"
  newns "$r"; newns "$c"
  attach "$r" "p-$name" "$wan"
  ip -n "$r" link add lan type veth peer name eth0 netns "$c"
  ip -n "$r" link set lan addrgenmode none # as in attach
  ip -n "$c" link set eth0 addrgenmode none
  ip -n "$r" addr add "$lan.1/24" dev lan
  ip -n "$r" link set lan up
  ip -n "$c" addr add "$lan.2/24" dev eth0
  ip -n "$c" link set eth0 up
  ip -n "$c" route add default via "$lan.1"
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
  local ipt="ip netns exec $r iptables"
  # Unsolicited inbound to the router itself is dropped in the filter table, so its
  # conntrack entry is never confirmed and cannot take a tuple MASQUERADE wants later.
  $ipt -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  case $kind in
    fullcone)
      # EIM + EIF: MASQUERADE keeps the source port (no collisions here), and every UDP
      # datagram to the router's public address goes to the client on the same port.
      # The DNAT also applies from the LAN side, and the SNAT gives hairpinned packets
      # the public source address (RFC 4787 REQ-9).
      $ipt -t nat -A POSTROUTING -o wan -j MASQUERADE
      $ipt -t nat -A PREROUTING -d "$wan" -p udp -j DNAT --to-destination "$lan.2"
      $ipt -t nat -A POSTROUTING -o lan -s "$lan.0/24" -d "$lan.2" -j SNAT --to-source "$wan"
      ;;
    restricted)
      # EIM + APDF (port-restricted cone): plain MASQUERADE; only the exact remote
      # address and port a mapping was used towards gets back in.
      $ipt -t nat -A POSTROUTING -o wan -j MASQUERADE
      ;;
    symmetric)
      # APDM + APDF: a random public port per remote address and port.
      $ipt -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully
      ;;
    fw443)
      # A firewall that lets out only TCP to port 443 (and the answers); no UDP at all.
      $ipt -P FORWARD DROP
      $ipt -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      $ipt -A FORWARD -i lan -o wan -p tcp --dport 443 -j ACCEPT
      $ipt -t nat -A POSTROUTING -o wan -j MASQUERADE
      ;;
  esac
}

create_lab() {
  ID="nl$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  PUB="$ID-pub"
  local state="$STATE_ROOT/$ID"
  mkdir -p "$state"
  newns "$PUB"
  ip -n "$PUB" link add br0 type bridge
  ip -n "$PUB" link set br0 up
  ip -n "$PUB" addr add "$SERVER_IP/24" dev br0
  ip -n "$PUB" addr add "$OTHER_IP/24" dev br0
  # The rest of the internet is a sink: a default route out of a veth pair to a MAC
  # nobody owns, so packets to anywhere else vanish inside the lab.
  ip -n "$PUB" link add sink0 type veth peer name sink1
  ip -n "$PUB" link set sink0 up
  ip -n "$PUB" link set sink1 up
  ip -n "$PUB" neigh add 198.51.100.254 lladdr 02:00:00:00:00:fe dev sink0 nud permanent
  ip -n "$PUB" route add default via 198.51.100.254 dev sink0 onlink
  # open: a client with a public address straight on the bridge, no NAT, no firewall.
  newns "$ID-open"
  attach "$ID-open" p-open 203.0.113.50
  ip -n "$ID-open" route add default via "$SERVER_IP"
  local n=1 kind
  for kind in fullcone restricted symmetric fw443; do
    nat_client "$kind" "$n"
    n=$((n + 1))
  done
  if [ "${NATLAB_TWINS:-0}" = 1 ]; then
    newns "$ID-open-b"
    attach "$ID-open-b" p-open-b 203.0.113.51
    ip -n "$ID-open-b" route add default via "$SERVER_IP"
    for kind in fullcone restricted symmetric fw443; do
      nat_client "$kind" "$n" "$kind-b"
      n=$((n + 1))
    done
  fi
  start_server "$state"
  {
    echo "NATLAB_ID=$ID"
    echo "NATLAB_PUB=$PUB"
    echo "NATLAB_KINDS=\"$KINDS\""
    echo "NATLAB_SERVER_IP=$SERVER_IP"
    echo "NATLAB_OTHER_IP=$OTHER_IP"
    echo "SWITCHBOARD_BIN=$BIN"
    for kind in $KINDS; do echo "NATLAB_NS_${kind^^}=$ID-$kind"; done
    if [ "${NATLAB_TWINS:-0}" = 1 ]; then
      for kind in $KINDS; do echo "NATLAB_NS_${kind^^}_B=$ID-$kind-b"; done
    fi
  } > "$state/env"
}

start_server() {
  local state=$1 want
  case "$SERVER_KIND" in
    none) return 0 ;;
    switchboard)
      ip netns exec "$PUB" "$BIN" serve -L "$SERVER_IP" -L "$OTHER_IP" -p 3478 \
        --tls-self-signed --tls-listening-port 443 --user lab:lab \
        --metrics-listen off --http-listen off >"$state/server.log" 2>&1 &
      want="$SERVER_IP:3478 $SERVER_IP:3479 $OTHER_IP:3478 $OTHER_IP:3479"
      ;;
    coturn)
      ip netns exec "$PUB" turnserver -n --listening-ip="$SERVER_IP" --listening-ip="$OTHER_IP" \
        --listening-port=3478 --no-tls --no-dtls --no-cli --lt-cred-mech --user=lab:lab \
        --realm=lab --log-file=stdout --pidfile="$state/turnserver.pid" \
        >"$state/server.log" 2>&1 &
      want="$SERVER_IP:3478 $SERVER_IP:3479 $OTHER_IP:3478 $OTHER_IP:3479"
      ;;
  esac
  echo $! >"$state/server.pid"
  local up a
  for _ in $(seq 100); do
    up=$(ip netns exec "$PUB" ss -Hlun 2>/dev/null | awk '{print $4}')
    local all=1
    for a in $want; do grep -qxF "$a" <<<"$up" || all=0; done
    [ $all = 1 ] && return 0
    kill -0 "$(cat "$state/server.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "nat lab: the $SERVER_KIND server did not come up on $want; its log:" >&2
  cat "$state/server.log" >&2
  return 1
}

probe_all() {
  local out=$1 kind ns pids=()
  for kind in $KINDS; do
    ns="$ID-$kind"
    (
      set +e
      ip netns exec "$ns" "$BIN" nat-probe --server "$SERVER_IP" --json >"$out/$kind.json" 2>/dev/null
      echo $? >"$out/$kind.rc"
    ) &
    pids+=($!)
    (ip netns exec "$ns" "$BIN" nat-probe --server "$SERVER_IP" >"$out/$kind.txt" 2>&1 || true) &
    pids+=($!)
  done
  wait "${pids[@]}" # not a bare `wait`: the server is a background job too
  for kind in $KINDS; do
    echo "== $kind (exit $(cat "$out/$kind.rc"))"
    cat "$out/$kind.txt"
  done
}

cmd=${1:-}
case "$cmd" in
  run | probe)
    shift
    preflight
    ID=""
    trap '[ -n "$ID" ] && destroy_lab "$ID"' EXIT
    trap 'exit 130' INT TERM HUP
    create_lab
    echo "nat lab $ID up ($SERVER_KIND on $SERVER_IP and $OTHER_IP)" >&2
    set +e
    if [ "$cmd" = run ]; then
      [ $# -gt 0 ] || die "usage: lab.sh run CMD [ARG...]"
      (set -a; . "$STATE_ROOT/$ID/env"; "$@")
    else
      out=${1:-}
      if [ -z "$out" ]; then out="$STATE_ROOT/$ID/probe"; fi
      mkdir -p "$out"
      probe_all "$out"
    fi
    rc=$?
    exit $rc
    ;;
  create)
    preflight
    ID=""
    trap '[ -n "$ID" ] && destroy_lab "$ID"; exit 1' ERR INT TERM
    create_lab
    trap - ERR INT TERM
    echo "nat lab $ID up; environment in $STATE_ROOT/$ID/env; remove with: $0 destroy $ID"
    cat "$STATE_ROOT/$ID/env"
    ;;
  destroy)
    [ "$(id -u)" = 0 ] || die "needs root"
    target=${2:-}
    [ -n "$target" ] || die "usage: lab.sh destroy ID|--all"
    if [ "$target" = --all ]; then
      for d in "$STATE_ROOT"/nl*; do [ -d "$d" ] && destroy_lab "$(basename "$d")"; done
    else
      [[ "$target" =~ ^nl[0-9a-f]+$ ]] || die "not a lab id: $target"
      destroy_lab "$target"
    fi
    ;;
  *)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2
    ;;
esac
