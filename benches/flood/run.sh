#!/usr/bin/env bash
# Flood benchmark: spip against a minimal epoll baseline, same namespace setup, same run.
#
#   sudo benches/flood/run.sh [COUNT] [HOLD]      (defaults: 20000 connections, 5000 held)
#   sudo TLS=1 benches/flood/run.sh               (adds the TLS section, TLS_COUNT connections)
#   sudo TLS=only benches/flood/run.sh            (the TLS section alone)
#   sudo SOURCES=16 benches/flood/run.sh          (all connections from 16 source addresses)
#   sudo ROUNDS=3 benches/flood/run.sh            (the sensors take turns 3 times; medians)
#   sudo VARIANTS="defer off poll nosyn" benches/flood/run.sh
#                                                 (spip's setups besides the default, same run:
#                                                 io_uring_taskrun = defer|off, io_driver = poll,
#                                                 or save_syn = false: the cost of SYN facts)
#
# TLS section: full TLS 1.3 handshake + one GET per connection (loadgen --mode tls), spip in
# TLS mode against two baselines: a minimal blocking rustls server (flood_tls_baseline, the
# floor) and `openssl s_server -www` (single-threaded, a heavier reference), with an ECDSA P-256 certificate
# (spip-agent gen-cert) and an RSA-2048 one (openssl req).
#
# Sinks: one more payload flood with every remote sink on (a Loom stand-in, an Elasticsearch
# `_bulk` stand-in, and a tansu Kafka broker when `tansu` is on PATH), for the capture threads'
# CPU with sinks on against off.
#
# For each sensor and mode it prints the sensor's own CPU time per connection (utime+stime
# from /proc/PID/stat, all threads), connections per second, and for spip the records written
# against the connections completed. `hold` reports RSS per held idle connection.
# Everything runs in a private network namespace on loopback; nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

COUNT=${1:-20000}
HOLD=${2:-5000}
PORT=8080
CONC=${CONC:-16}
TLS=${TLS:-0}
TLS_COUNT=${TLS_COUNT:-3000}
SOURCES=${SOURCES:-65000}
VARIANTS=${VARIANTS:-defer off poll nosyn}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespace, iptables)" >&2; exit 2; }

cargo build --release -q --offline --bin spip-agent --example flood_loadgen --example flood_baseline \
    --example flood_tls_baseline
BIN=target/release
NS=spip-bench-$$
WORK=$(mktemp -d)
SENSOR_PID=
LOOM_PID=
ES_PID=
KAFKA_PID=
cleanup() {
    for pid in "$SENSOR_PID" "$LOOM_PID" "$ES_PID" "$KAFKA_PID"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" iptables -t nat -A OUTPUT -p tcp -d 127.0.0.0/8 ! --dport $PORT -j REDIRECT --to-ports $PORT
# Many short connections from one host: let TIME_WAIT sockets be reused by the generator.
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.core.somaxconn=65535

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Capture threads only (spip's workers), without the writer and Loom threads.
worker_ticks() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '/\(spip-worker/ {t += $14 + $15} END {print t + 0}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }

cat > "$WORK/spip.toml" <<EOF
name = "bench"
ip = "::"
port = $PORT
log_file = "$WORK/records.jsonl"
read_timeout_seconds = 30
session_timeout_seconds = 120
rate_limit_per_second = 10000000
rate_limit_burst = 10000000
per_source_rate_per_second = 0
max_connections = 200000
stats_interval_seconds = 3600
# Summary records would be counted as connection records by the loss check below.
scan_summaries = false
EOF

start_sensor() { # name
    if [ "${1%-sinks}" = spip ]; then
        ip netns exec "$NS" "$BIN/spip-agent" --config "$WORK/spip.toml" 2>"$WORK/spip.err" &
    elif [ "${1#spip-}" != "$1" ] && [ -f "$WORK/$1.toml" ]; then
        ip netns exec "$NS" "$BIN/spip-agent" --config "$WORK/$1.toml" 2>"$WORK/$1.err" &
    elif [ "$1" = spip-tls ]; then
        ip netns exec "$NS" "$BIN/spip-agent" --config "$WORK/spip-tls.toml" 2>"$WORK/spip-tls.err" &
    elif [ "$1" = rustls ]; then
        ip netns exec "$NS" "$BIN/examples/flood_tls_baseline" $PORT 2 \
            "$WORK/tls/cert.pem" "$WORK/tls/key.pem" 2>"$WORK/rustls.err" &
    elif [ "$1" = s_server ]; then
        ip netns exec "$NS" openssl s_server -quiet -www -accept $PORT \
            -cert "$WORK/tls/cert.pem" -key "$WORK/tls/key.pem" </dev/null >/dev/null 2>"$WORK/s_server.err" &
    else
        ip netns exec "$NS" "$BIN/examples/flood_baseline" $PORT 2 2>"$WORK/baseline.err" &
    fi
    SENSOR_PID=$!
    for _ in $(seq 100); do
        ip netns exec "$NS" ss -ltnH | grep -q ":$PORT " && return 0
        sleep 0.05
    done
    echo "sensor $1 did not start" >&2; exit 1
}

stop_sensor() {
    kill -TERM "$SENSOR_PID"; wait "$SENSOR_PID" 2>/dev/null || true; SENSOR_PID=
}

declare -A RESULT
flood() { # sensor mode
    local sensor=$1 mode=$2 before after out completed cps us rec0 rec1
    rec0=$(lines "$WORK/records.jsonl")
    sleep 0.5
    before=$(cpu_ticks "$SENSOR_PID")
    wbefore=$(worker_ticks "$SENSOR_PID")
    out=$(ip netns exec "$NS" "$BIN/examples/flood_loadgen" --mode "$mode" --count "${FLOOD_COUNT:-$COUNT}" \
        --concurrency "$CONC" --sources "$SOURCES")
    sleep 1.5 # let the sensor finish the last connections and flush
    after=$(cpu_ticks "$SENSOR_PID")
    wafter=$(worker_ticks "$SENSOR_PID")
    completed=$(sed 's/.*"completed":\([0-9]*\).*/\1/' <<<"$out")
    cps=$(sed 's/.*"conns_per_s":\([0-9]*\).*/\1/' <<<"$out")
    us=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$completed" 'BEGIN { printf "%.1f", (a - b) * 1e6 / t / n }')
    rec1=$(lines "$WORK/records.jsonl")
    # Each round's figures; the report shows the median over the rounds.
    RESULT[$sensor,$mode,us_all]+="$us "
    RESULT[$sensor,$mode,worker_us_all]+="$(awk -v a="$wafter" -v b="$wbefore" -v t="$TCK" -v n="$completed" \
        'BEGIN { printf "%.1f", (a - b) * 1e6 / t / n }') "
    RESULT[$sensor,$mode,cps_all]+="$cps "
    RESULT[$sensor,$mode,us]=$(median ${RESULT[$sensor,$mode,us_all]})
    RESULT[$sensor,$mode,worker_us]=$(median ${RESULT[$sensor,$mode,worker_us_all]})
    RESULT[$sensor,$mode,cps]=$(median ${RESULT[$sensor,$mode,cps_all]})
    RESULT[$sensor,$mode,completed]=$(( ${RESULT[$sensor,$mode,completed]:-0} + completed ))
    RESULT[$sensor,$mode,records]=$(( ${RESULT[$sensor,$mode,records]:-0} + rec1 - rec0 ))
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

hold() { # sensor
    local sensor=$1 base during held
    base=$(rss_kb "$SENSOR_PID")
    ip netns exec "$NS" "$BIN/examples/flood_loadgen" --mode hold --count "$HOLD" --hold-secs 4 \
        >"$WORK/hold.out" 2>"$WORK/hold.err" &
    local gen=$!
    for _ in $(seq 600); do grep -q HOLDING "$WORK/hold.err" 2>/dev/null && break; sleep 0.05; done
    sleep 1
    during=$(rss_kb "$SENSOR_PID")
    held=$(awk '/HOLDING/ {print $2}' "$WORK/hold.err")
    wait $gen || true
    RESULT[$sensor,hold,bytes]=$(awk -v d="$during" -v b="$base" -v n="$held" 'BEGIN { printf "%.0f", (d - b) * 1024 / n }')
    RESULT[$sensor,hold,held]=$held
    sleep 1
}

tls_section() {
    local kind sensor
    mkdir -p "$WORK/tls-ecdsa" "$WORK/tls-rsa"
    "$BIN/spip-agent" gen-cert --out "$WORK/tls-ecdsa" --cn bench.test >/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench.test \
        -keyout "$WORK/tls-rsa/key.pem" -out "$WORK/tls-rsa/cert.pem" 2>/dev/null
    for kind in ecdsa rsa; do
        rm -rf "$WORK/tls"; cp -r "$WORK/tls-$kind" "$WORK/tls"
        sed 's#records.jsonl#records-tls.jsonl#' "$WORK/spip.toml" > "$WORK/spip-tls.toml"
        printf 'cert_path = "%s"\nkey_path = "%s"\n' "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >> "$WORK/spip-tls.toml"
        for sensor in s_server rustls spip-tls; do
            start_sensor $sensor
            FLOOD_COUNT=$TLS_COUNT flood_tls "$sensor-$kind"
            stop_sensor
        done
    done
    printf '\n%-15s %12s %10s %12s %12s\n' "tls sensor" "cpu_us/conn" "conns/s" completed records
    for kind in ecdsa rsa; do
        for sensor in s_server rustls spip-tls; do
            local k=$sensor-$kind rec=${RESULT[$sensor-$kind,tls,records]}
            [ $sensor != spip-tls ] && rec=-
            printf '%-15s %12s %10s %12s %12s\n' "$k" "${RESULT[$k,tls,us]}" "${RESULT[$k,tls,cps]}" \
                "${RESULT[$k,tls,completed]}" "$rec"
        done
        awk -v s="${RESULT[spip-tls-$kind,tls,us]}" -v b="${RESULT[rustls-$kind,tls,us]}" \
            -v o="${RESULT[s_server-$kind,tls,us]}" -v k=$kind \
            'BEGIN { printf "ratio tls %-5s %6.2fx vs rustls, %.2fx vs s_server\n", k, s / b, s / o }'
    done
}

flood_tls() { # result-key
    local key=$1 before after out completed cps us rec0 rec1
    rec0=$(lines "$WORK/records-tls.jsonl")
    before=$(cpu_ticks "$SENSOR_PID")
    out=$(ip netns exec "$NS" "$BIN/examples/flood_loadgen" --mode tls --count "$TLS_COUNT" --concurrency "$CONC")
    sleep 1.5
    after=$(cpu_ticks "$SENSOR_PID")
    completed=$(sed 's/.*"completed":\([0-9]*\).*/\1/' <<<"$out")
    cps=$(sed 's/.*"conns_per_s":\([0-9]*\).*/\1/' <<<"$out")
    us=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$completed" 'BEGIN { if (n == 0) n = 1; printf "%.1f", (a - b) * 1e6 / t / n }')
    rec1=$(lines "$WORK/records-tls.jsonl")
    RESULT[$key,tls,us]=$us
    RESULT[$key,tls,cps]=$cps
    RESULT[$key,tls,completed]=$completed
    RESULT[$key,tls,records]=$((rec1 - rec0))
}

if [ "$TLS" = only ]; then
    tls_section
    exit 0
fi

for v in $VARIANTS; do
    case $v in
        poll) line='io_driver = "poll"' ;;
        nosyn) line='save_syn = false' ;;
        *) line="io_uring_taskrun = \"$v\"" ;;
    esac
    { cat "$WORK/spip.toml"; echo "$line"; } > "$WORK/spip-$v.toml"
done
spip_variants=$(for v in $VARIANTS; do printf 'spip-%s ' "$v"; done)
# ROUNDS > 1: the sensors take turns ROUNDS times (noisy shared cores drift between runs); the
# report shows each figure's median.
ROUNDS=${ROUNDS:-1}
rm -f "$WORK/records-spip.jsonl"
for round in $(seq "$ROUNDS"); do
for sensor in baseline spip $spip_variants; do
    start_sensor $sensor
    # Hold first, on a fresh process (after a warm-up that initializes the buffer pools):
    # memory freed by a flood would otherwise be reused and hide the per-connection cost.
    ip netns exec "$NS" "$BIN/examples/flood_loadgen" --mode payload --count 500 --concurrency 4 >/dev/null
    sleep 0.5
    if [ "$round" = 1 ] && { [ "$sensor" = baseline ] || [ "$sensor" = spip ]; }; then hold $sensor; fi
    # Steady state: one unmeasured flood from every source first, so that tables that live as
    # long as the sensor (the per-source scan summaries: 16,384 sources) are already in memory.
    ip netns exec "$NS" "$BIN/examples/flood_loadgen" --mode empty --count "${WARM_COUNT:-20000}" \
        --concurrency "$CONC" --sources "$SOURCES" >/dev/null
    sleep 1
    flood $sensor empty
    flood $sensor payload
    stop_sensor
    # Only the default spip's records count for the loss check below.
    [ "$sensor" = spip ] && cat "$WORK/records.jsonl" >> "$WORK/records-spip.jsonl"
    rm -f "$WORK/records.jsonl"
done
done

# All sinks on: the same payload flood, records also shipped to a Loom stand-in, an
# Elasticsearch `_bulk` stand-in and, when `tansu` is on PATH, a real Kafka-protocol broker.
LOOM_PORT=9999
ES_PORT=9998
KAFKA_PORT=9997
for p in $LOOM_PORT $ES_PORT $KAFKA_PORT; do
    ip netns exec "$NS" iptables -t nat -I OUTPUT 1 -p tcp -d 127.0.0.0/8 --dport $p -j RETURN
done
ip netns exec "$NS" python3 benches/flood/loom_sink.py $LOOM_PORT "$WORK/loom.count" &
LOOM_PID=$!
ip netns exec "$NS" python3 benches/flood/es_sink.py $ES_PORT "$WORK/es.count" &
ES_PID=$!
if command -v tansu >/dev/null; then
    mkdir -p "$WORK/tansu"
    (cd "$WORK/tansu" && exec ip netns exec "$NS" tansu broker --storage-engine sqlite://tansu.db \
        --listener-url tcp://127.0.0.1:$KAFKA_PORT --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT \
        >"$WORK/tansu.log" 2>&1) &
    KAFKA_PID=$!
    for _ in $(seq 200); do ip netns exec "$NS" ss -ltnH | grep -q ":$KAFKA_PORT " && break; sleep 0.05; done
    ip netns exec "$NS" tansu topic create spip --partitions 3 --broker tcp://127.0.0.1:$KAFKA_PORT >/dev/null
fi
sleep 0.5
cp "$WORK/spip.toml" "$WORK/spip-nosinks.toml"
printf '[loom]\nenabled = true\nurl = "http://127.0.0.1:%s/ingest"\nsensor_id = "bench"\ntoken = "bench"\nbatch_size = 500\nflush_interval = "1s"\n' \
    $LOOM_PORT >> "$WORK/spip.toml"
printf '[elasticsearch]\nenabled = true\nurl = "http://127.0.0.1:%s"\n' $ES_PORT >> "$WORK/spip.toml"
sinks="loom, elasticsearch"
if [ -n "$KAFKA_PID" ]; then
    printf '[kafka]\nenabled = true\nbrokers = ["127.0.0.1:%s"]\ntopic = "spip"\n' $KAFKA_PORT >> "$WORK/spip.toml"
    sinks="$sinks, kafka"
fi
main_total=$(lines "$WORK/records-spip.jsonl")
rm -f "$WORK/records.jsonl"
start_sensor spip-sinks
flood spip-sinks payload
sleep 5 # let the sinks deliver what they hold (the drain at stop is bounded)
stop_sensor
kill $LOOM_PID $ES_PID 2>/dev/null || true
[ -n "$KAFKA_PID" ] && { kill $KAFKA_PID 2>/dev/null || true; pkill -f "listener-url tcp://127.0.0.1:$KAFKA_PORT" || true; }
cp "$WORK/spip-nosinks.toml" "$WORK/spip.toml"
shipped=$(cat "$WORK/loom.count" 2>/dev/null || echo 0)
indexed=$(cat "$WORK/es.count" 2>/dev/null || echo 0)

printf '\n%-11s %-8s %12s %10s %12s %12s\n' sensor mode "cpu_us/conn" "conns/s" completed records
echo "(sources: $SOURCES; spip = io_uring with the default io_uring_taskrun; each figure the median of $ROUNDS rounds)"
for mode in empty payload; do
    for sensor in baseline spip $spip_variants; do
        rec=${RESULT[$sensor,$mode,records]}; [ $sensor = baseline ] && rec=-
        printf '%-11s %-8s %12s %10s %12s %12s\n' $sensor $mode "${RESULT[$sensor,$mode,us]}" \
            "${RESULT[$sensor,$mode,cps]}" "${RESULT[$sensor,$mode,completed]}" "$rec"
    done
    for sensor in spip $spip_variants; do
        awk -v s="${RESULT[$sensor,$mode,us]}" -v b="${RESULT[baseline,$mode,us]}" -v m=$mode -v k=$sensor \
            'BEGIN { printf "ratio %-11s %-8s %6.2fx vs baseline\n", k, m, s / b }'
    done
done
for sensor in baseline spip; do
    printf '%-9s hold     %s bytes RSS per idle connection (%s held)\n' $sensor \
        "${RESULT[$sensor,hold,bytes]}" "${RESULT[$sensor,hold,held]}"
done
lost=$(( RESULT[spip,empty,completed] + RESULT[spip,payload,completed] + RESULT[spip,hold,held] + (500 + ${WARM_COUNT:-20000}) * ROUNDS ))
total=$main_total
echo "spip records: $total written for $lost connections completed (lost: $((lost - total)))"
echo "spip worker-thread CPU (capture only): empty ${RESULT[spip,empty,worker_us]} us/conn, payload ${RESULT[spip,payload,worker_us]} us/conn"
awk -v on="${RESULT[spip-sinks,payload,worker_us]}" -v off="${RESULT[spip,payload,worker_us]}" \
    -v allon="${RESULT[spip-sinks,payload,us]}" -v alloff="${RESULT[spip,payload,us]}" -v s="$sinks" \
    'BEGIN { printf "sinks on (%s): capture %s us/conn vs %s off (%.2fx); whole process %s vs %s us/conn\n", s, on, off, on / off, allon, alloff }'
echo "loom shipped $shipped, elasticsearch indexed $indexed, of ${RESULT[spip-sinks,payload,completed]} records"
grep -h final_stats "$WORK/spip.err" 2>/dev/null | grep -o '"kafka_[a-z]*":[0-9]*' | tr '\n' ' ' || true
echo
if [ -n "${RESULT[spip-nosyn,empty,us]:-}" ]; then
    for mode in empty payload; do
        awk -v on="${RESULT[spip,$mode,us]}" -v off="${RESULT[spip-nosyn,$mode,us]}" \
            -v won="${RESULT[spip,$mode,worker_us]}" -v woff="${RESULT[spip-nosyn,$mode,worker_us]}" -v m=$mode \
            'BEGIN { printf "save_syn %-7s on %s us/conn (capture %s), off %s (capture %s): SYN facts %+.1f%%\n", m, on, won, off, woff, (on / off - 1) * 100 }'
    done
fi
grep final_stats "$WORK/spip.err" || true
[ "$TLS" = 1 ] && tls_section
exit 0
