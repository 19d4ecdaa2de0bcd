#!/usr/bin/env bash
# Cluster lab (issue 14): one Redis and three switchboard nodes on one machine, each in its
# own network namespace on one bridge, with no link to the root namespace. Faults are real:
# SIGKILL, SIGTERM, SIGSTOP, a Redis restart, iptables partitions (no netem here).
#
#   hub     (bridge br0, no address)      redis  198.51.100.10  redis-server :6379
#   n1 n2 n3  198.51.100.11 .12 .13       clients 198.51.100.50 and up
#
# A CLI; the lab is named by --lab ID or $CLUSTERLAB_ID (fresh cl<random> names, so runs
# never clash). `up` prints KEY=VALUE lines: `set -a; eval "$(lab.sh up)"; set +a`.
#
#   up                      make a lab, start Redis; prints CLUSTERLAB_ID, CLUSTERLAB_REDIS
#                           (redis://198.51.100.10:6379), CLUSTERLAB_STATE (logs), ...
#   down [ID|--all]         end its processes (by pid) and remove its namespaces
#   run CMD [ARG...]        up, CMD with the lab's variables set, down (also on failure or
#                           Ctrl-C); exits with CMD's status
#   start-node N [ARG...]   `switchboard serve --cluster ... --node-name nN --http-listen
#                           198.51.100.1N:8080 ...` in nN, ARGs appended; waits for its
#                           --ready-file (STATE/nN.ready.json); log in STATE/nN.log
#   stop-node N             SIGTERM, wait for the exit; prints `nN exit STATUS`
#   kill-node N             SIGKILL, wait for the exit
#   pause-node N | cont-node N     SIGSTOP | SIGCONT
#   redis-stop | redis-start | redis-restart
#                           `redis-cli shutdown nosave` (the data is gone, as after a crash
#                           without persistence); start again on the same address
#   partition N [PEER...]   iptables in nN dropping everything to and from PEERs (redis,
#                           n1..n3 or addresses; default: redis and the other nodes, so
#                           its clients still reach it); repeatable
#   heal N                  remove nN's partition rules
#   client [NAME]           a new namespace ID-NAME (default cK) on the bridge at the next
#                           client address; prints `NS ADDRESS`
#   attach NS               put an existing namespace (e.g. the browser tests' own) on the
#                           bridge at the next client address (device ID in NS, gone at
#                           down); prints the address
#   exec WHERE CMD [ARG...] CMD in redis, hub, nN or a client made by `client`
#   status [ARG...]         `switchboard cluster status --cluster redis://...` (run in redis)
#   env                     the variables `up` printed
#
# Settings: SWITCHBOARD_BIN (default target/debug/switchboard; start-node and status need
# it), CLUSTERLAB_REDIS_AOF=1 (Redis with --appendonly yes --appendfsync always, so that a
# restart keeps the data), CLUSTERLAB_READY_SECS (start-node's limit, default 30).
# Needs root, iproute2, iptables and Debian's redis-server. Processes are ended by the pid
# (and start time) recorded when they were started, then anything left in the lab's own
# namespaces; a namespace given to `attach` is only unplugged.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_ROOT=/run/switchboard-clusterlab
NET=198.51.100
REDIS_IP=$NET.10
REDIS_URL="redis://$REDIS_IP:6379"
FIRST_CLIENT=50

die() { echo "cluster lab: $*" >&2; exit 2; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces and iptables): run it with sudo"; }

bin() {
  local b="${SWITCHBOARD_BIN:-$ROOT/target/debug/switchboard}"
  case "$b" in /*) ;; *) b="$PWD/$b" ;; esac
  [ -x "$b" ] || die "no switchboard binary at $b (cargo build -p switchboard, or set SWITCHBOARD_BIN)"
  echo "$b"
}

# The lab the command is about: its id and state directory.
select_lab() {
  ID="${LAB_ARG:-${CLUSTERLAB_ID:-}}"
  [ -n "$ID" ] || die "which lab? give --lab ID or set CLUSTERLAB_ID (from \`up\`)"
  [[ "$ID" =~ ^cl[0-9a-f]{8}$ ]] || die "not a lab id: $ID"
  STATE="$STATE_ROOT/$ID"
  [ -d "$STATE" ] || die "no lab $ID (no $STATE)"
}

node_ns() {
  [[ "$1" =~ ^[123]$ ]] || die "node must be 1, 2 or 3, not '$1'"
  echo "$ID-n$1"
}

# --- processes: a pid file holds "PID STARTTIME", so a reused pid is never signalled -----
proc_id() { [ -r "/proc/$1/stat" ] && sed 's/^.*) //' "/proc/$1/stat" | awk '{print $20}'; }

# Alive: the recorded process still exists (and is not a zombie waiting for its reaper).
alive() {
  local f=$1 pid start state
  [ -f "$f" ] || return 1
  read -r pid start <"$f"
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $1, $20}') || return 1
  [ "${state#* }" = "$start" ] && [ "${state%% *}" != Z ]
}

signal_proc() { # pidfile signal
  alive "$1" || return 1
  local pid
  read -r pid _ <"$1"
  kill -s "$2" "$pid" 2>/dev/null
}

wait_gone() { # pidfile seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  return 1
}

# Start "$@" in the background with stdin closed and output appended to $log; record it.
spawn() { # pidfile log CMD...
  local pidfile=$1 log=$2 pid start
  shift 2
  echo "=== $(date -u +%FT%T.%3NZ) $*" >>"$log"
  # `ip netns exec` execs CMD in place (no fork), so $! is CMD's own pid.
  "$@" </dev/null >>"$log" 2>&1 &
  pid=$!
  start=$(proc_id "$pid") || die "$* exited at once; its log: $log"
  echo "$pid $start" >"$pidfile"
}

# --- namespaces --------------------------------------------------------------------------
# A namespace with lo up and its own resolv.conf (`ip netns exec` bind-mounts
# /etc/netns/NS/*), so name lookups fail at once inside the lab.
newns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  mkdir -p "/etc/netns/$1"
  echo "nameserver 127.0.0.1" >"/etc/netns/$1/resolv.conf"
}

# A veth from namespace $1 (device $3 there, address $4) to port $2 of the hub's bridge.
plug() {
  local ns=$1 port=$2 dev=$3 addr=$4
  ip -n "$ns" link add "$dev" type veth peer name "$port" netns "$ID-hub"
  ip -n "$ID-hub" link set "$port" master br0 up
  # No IPv6 link-local address: the lab is IPv4, and one that appears a second or two
  # after `up` (once DAD ends) is a network change to a Chromium already running in an
  # attached namespace, which aborts its requests in flight (net::ERR_NETWORK_CHANGED:
  # an SDK import of cluster.test.mjs's first test failed that way in CI, twice).
  ip -n "$ns" link set "$dev" addrgenmode none
  ip -n "$ns" addr add "$addr/24" dev "$dev"
  ip -n "$ns" link set "$dev" up
}

next_client_ip() {
  local k
  k=$(cat "$STATE/clients" 2>/dev/null || echo 0)
  [ "$k" -lt $((254 - FIRST_CLIENT)) ] || die "no client address left"
  echo $((k + 1)) >"$STATE/clients"
  CLIENT_K=$((k + 1))
  CLIENT_IP="$NET.$((FIRST_CLIENT + k))"
}

lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-" || true; }

destroy_lab() {
  local id=$1 state="$STATE_ROOT/$1" f ns sig pids
  set +e
  # The processes the lab started, by their recorded pid: TERM, then KILL.
  for f in "$state"/*.pid; do [ -f "$f" ] && signal_proc "$f" TERM; done
  for f in "$state"/*.pid; do [ -f "$f" ] && { wait_gone "$f" 5 || signal_proc "$f" KILL; }; done
  # Anything else in the lab's own namespaces was started in them through this lab.
  for ns in $(lab_namespaces "$id"); do
    for sig in TERM KILL; do
      pids=$(ip netns pids "$ns" 2>/dev/null)
      [ -z "$pids" ] && break
      kill -s "$sig" $pids 2>/dev/null
      sleep 0.3
    done
  done
  # The devices in attached namespaces by name: deleting a namespace (the hub's end of
  # their veths) takes them only when the kernel gets round to it, and a device left
  # behind with its address would meet the next lab's on the same subnet.
  if [ -f "$state/attached" ]; then
    while read -r ns; do ip -n "$ns" link del "$id" 2>/dev/null; done <"$state/attached"
  fi
  ip netns del "$id-hub" 2>/dev/null
  for ns in $(lab_namespaces "$id"); do
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "/etc/netns/$id-hub" "$state"
  set -e
}

# --- Redis ---------------------------------------------------------------------------------
redis_cli() { ip netns exec "$ID-redis" redis-cli -h "$REDIS_IP" -p 6379 "$@"; }

redis_start() {
  alive "$STATE/redis.pid" && die "redis is already running"
  local persist=(--save '' --appendonly no)
  if [ "$(cat "$STATE/aof" 2>/dev/null)" = 1 ]; then
    persist=(--save '' --appendonly yes --appendfsync always)
  fi
  mkdir -p "$STATE/redis"
  spawn "$STATE/redis.pid" "$STATE/redis.log" ip netns exec "$ID-redis" redis-server \
    --bind "$REDIS_IP" --port 6379 --protected-mode no --daemonize no --logfile '' \
    --dir "$STATE/redis" "${persist[@]}"
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(redis_cli ping 2>/dev/null)" = PONG ] && return 0
    alive "$STATE/redis.pid" || break
    sleep 0.1
  done
  tail -n 20 "$STATE/redis.log" >&2
  die "redis-server did not answer on $REDIS_IP:6379"
}

redis_stop() {
  alive "$STATE/redis.pid" || die "redis is not running"
  redis_cli shutdown nosave >/dev/null 2>&1 || true
  wait_gone "$STATE/redis.pid" 10 && return 0
  signal_proc "$STATE/redis.pid" KILL || true
  wait_gone "$STATE/redis.pid" 5 || die "redis-server did not exit"
}

# --- nodes ---------------------------------------------------------------------------------
start_node() {
  local n=$1 ns ip b ready limit=${CLUSTERLAB_READY_SECS:-30} i
  shift
  ns=$(node_ns "$n")
  ip="$NET.1$n"
  b=$(bin)
  alive "$STATE/n$n.pid" && die "n$n is already running"
  ready="$STATE/n$n.ready.json"
  rm -f "$ready"
  spawn "$STATE/n$n.pid" "$STATE/n$n.log" ip netns exec "$ns" "$b" serve \
    --cluster "$REDIS_URL" --node-name "n$n" \
    --http-listen "$ip:8080" --listening-ip "$ip" --metrics-listen "$ip:9641" \
    --ready-file "$ready" "$@"
  for ((i = 0; i < limit * 10; i++)); do
    [ -s "$ready" ] && { echo "n$n ready: $ip"; return 0; }
    alive "$STATE/n$n.pid" || break
    sleep 0.1
  done
  echo "cluster lab: n$n did not become ready within ${limit}s; the end of its log:" >&2
  tail -n 30 "$STATE/n$n.log" >&2
  signal_proc "$STATE/n$n.pid" KILL || true
  exit 1
}

stop_node() { # N signal seconds
  local f="$STATE/n$1.pid" pid
  node_ns "$1" >/dev/null
  alive "$f" || die "n$1 is not running"
  read -r pid _ <"$f"
  signal_proc "$f" "$2"
  wait_gone "$f" "$3" || die "n$1 (pid $pid) did not exit within $3 s of SIG$2"
  # The node's exit status is its parent's to see (the shell that started it is gone):
  # its log says how it ended.
  echo "n$1 exited (SIG$2)"
}

# --- partitions ----------------------------------------------------------------------------
peer_ip() {
  case $1 in
    redis) echo "$REDIS_IP" ;;
    n[123]) echo "$NET.1${1#n}" ;;
    *.*.*.*) echo "$1" ;;
    *) die "not a peer: $1 (redis, n1..n3 or an address)" ;;
  esac
}

partition() {
  local n=$1 ns peers=() p ip
  shift
  ns=$(node_ns "$n")
  if [ $# -eq 0 ]; then
    peers=("$REDIS_IP")
    for p in 1 2 3; do [ "$p" = "$n" ] || peers+=("$NET.1$p"); done
  else
    for p in "$@"; do peers+=("$(peer_ip "$p")"); done
  fi
  local ipt="ip netns exec $ns iptables -w"
  # One chain holds the rules, so `heal` is a flush; established connections are cut too.
  if ! $ipt -nL LABPART >/dev/null 2>&1; then
    $ipt -N LABPART
    $ipt -I INPUT -j LABPART
    $ipt -I OUTPUT -j LABPART
  fi
  for ip in "${peers[@]}"; do
    $ipt -A LABPART -s "$ip" -j DROP
    $ipt -A LABPART -d "$ip" -j DROP
  done
  echo "n$n partitioned from ${peers[*]}"
}

heal() {
  local ns
  ns=$(node_ns "$1")
  ip netns exec "$ns" iptables -w -F LABPART 2>/dev/null || true
  echo "n$1 healed"
}

# --- the lab -------------------------------------------------------------------------------
print_env() {
  echo "CLUSTERLAB_ID=$ID"
  echo "CLUSTERLAB_STATE=$STATE"
  echo "CLUSTERLAB_REDIS=$REDIS_URL"
  echo "CLUSTERLAB_NS_HUB=$ID-hub"
  echo "CLUSTERLAB_NS_REDIS=$ID-redis"
  local n
  for n in 1 2 3; do
    echo "CLUSTERLAB_NS_N$n=$ID-n$n"
    echo "CLUSTERLAB_N${n}_IP=$NET.1$n"
  done
}

create_lab() {
  command -v redis-server >/dev/null 2>&1 || die "missing redis-server (apt-get install redis-server)"
  for t in ip iptables redis-cli; do command -v "$t" >/dev/null 2>&1 || die "missing $t"; done
  ID="cl$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  STATE="$STATE_ROOT/$ID"
  mkdir -p "$STATE"
  echo "${CLUSTERLAB_REDIS_AOF:-0}" >"$STATE/aof"
  newns "$ID-hub"
  ip -n "$ID-hub" link add br0 type bridge
  ip -n "$ID-hub" link set br0 up
  newns "$ID-redis"
  plug "$ID-redis" redis eth0 "$REDIS_IP"
  local n
  for n in 1 2 3; do
    newns "$ID-n$n"
    plug "$ID-n$n" "n$n" eth0 "$NET.1$n"
  done
  redis_start
  print_env >"$STATE/env"
}

LAB_ARG=""
if [ "${1:-}" = --lab ]; then
  LAB_ARG=${2:-}
  shift 2 || die "--lab needs an id"
fi
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up)
    need_root
    ID=""
    # A lab that did not come up whole is removed (die exits, so no ERR trap).
    trap 'rc=$?; if [ $rc != 0 ] && [ -n "$ID" ]; then destroy_lab "$ID"; fi; exit $rc' EXIT
    trap 'exit 130' INT TERM HUP
    create_lab
    trap - EXIT INT TERM HUP
    cat "$STATE/env"
    ;;
  run)
    need_root
    [ $# -gt 0 ] || die "usage: lab.sh run CMD [ARG...]"
    ID=""
    trap '[ -n "$ID" ] && destroy_lab "$ID"' EXIT
    trap 'exit 130' INT TERM HUP
    create_lab
    echo "cluster lab $ID up (redis on $REDIS_IP)" >&2
    set +e
    (set -a; . "$STATE/env"; "$@")
    exit $?
    ;;
  down)
    need_root
    target=${1:-${LAB_ARG:-${CLUSTERLAB_ID:-}}}
    [ -n "$target" ] || die "usage: lab.sh down ID|--all"
    if [ "$target" = --all ]; then
      for d in "$STATE_ROOT"/cl*; do [ -d "$d" ] && destroy_lab "$(basename "$d")"; done
    else
      [[ "$target" =~ ^cl[0-9a-f]{8}$ ]] || die "not a lab id: $target"
      destroy_lab "$target"
    fi
    ;;
  start-node) need_root; select_lab; [ $# -gt 0 ] || die "usage: start-node N [ARG...]"; start_node "$@" ;;
  stop-node) need_root; select_lab; stop_node "${1:?N}" TERM 20 ;;
  kill-node) need_root; select_lab; stop_node "${1:?N}" KILL 5 ;;
  pause-node) need_root; select_lab; node_ns "${1:?N}" >/dev/null; signal_proc "$STATE/n$1.pid" STOP || die "n$1 is not running" ;;
  cont-node) need_root; select_lab; node_ns "${1:?N}" >/dev/null; signal_proc "$STATE/n$1.pid" CONT || die "n$1 is not running" ;;
  redis-stop) need_root; select_lab; redis_stop ;;
  redis-start) need_root; select_lab; redis_start ;;
  redis-restart) need_root; select_lab; redis_stop; redis_start ;;
  partition) need_root; select_lab; [ $# -gt 0 ] || die "usage: partition N [PEER...]"; partition "$@" ;;
  heal) need_root; select_lab; heal "${1:?N}" ;;
  client)
    need_root; select_lab
    next_client_ip
    name=${1:-c$CLIENT_K}
    [[ "$name" =~ ^[a-z0-9]{1,8}$ ]] || die "client names are 1-8 of a-z0-9"
    [[ "$name" =~ ^(hub|redis|n[123])$ ]] && die "$name is a lab namespace"
    newns "$ID-$name"
    plug "$ID-$name" "c$CLIENT_K" eth0 "$CLIENT_IP"
    echo "$ID-$name $CLIENT_IP"
    ;;
  attach)
    need_root; select_lab
    ns=${1:?usage: attach NS}
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$ns" || die "no namespace $ns"
    # A lab taken down by killing its CLI (no `down`) leaves its device until the kernel
    # removes it with the hub: wait for that, as the same address is ours next.
    for ((i = 0; i < 50; i++)); do
      ip -n "$ns" -o -4 addr show | grep -qF " $NET." || break
      sleep 0.1
    done
    ip -n "$ns" -o -4 addr show | grep -qF " $NET." \
      && die "namespace $ns still has an address in $NET.0/24 (another cluster lab attached?)"
    next_client_ip
    echo "$ns" >>"$STATE/attached"
    plug "$ns" "c$CLIENT_K" "$ID" "$CLIENT_IP"
    echo "$CLIENT_IP"
    ;;
  exec)
    need_root; select_lab
    where=${1:?usage: exec WHERE CMD [ARG...]}
    shift
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$ID-$where" || die "no namespace $ID-$where"
    exec ip netns exec "$ID-$where" "$@"
    ;;
  status) need_root; select_lab; exec ip netns exec "$ID-redis" "$(bin)" cluster status --cluster "$REDIS_URL" "$@" ;;
  env) select_lab; cat "$STATE/env" ;;
  *)
    sed -n '2,45p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2
    ;;
esac
