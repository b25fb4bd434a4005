#!/bin/bash
# Market data on or off: serve, a UDP listener counting the feed (on), and `load`; docs/BENCHMARKS.md ("Market data").
# usage: mdbench.sh on|off [load args]
BIN=${BIN:-target/release/matching-engine}
mode=$1; shift
dir=$(mktemp -d /tmp/mb.XXXX)
extra="--feed-addr 127.0.0.1:27710 --feed-rerequest-addr 127.0.0.1:27711 --feed-snapshot-addr 127.0.0.1:27712"
[ "$mode" = off ] && extra="--no-market-data"
python3 "$(dirname "$0")/udpcount.py" 27710 > $dir/udp &
upid=$!
$BIN serve --data $dir/data $extra --binary-addr 127.0.0.1:27700 --json-addr 127.0.0.1:27701 --http-addr 127.0.0.1:28080 > $dir/out 2> $dir/err &
pid=$!
for i in $(seq 50); do grep -q listening $dir/out 2>/dev/null && break; sleep 0.1; done
$BIN load --wire binary --addr 127.0.0.1:27700 --json --quiet "$@"
kill -TERM $pid; wait $pid
sleep 0.3; kill -TERM $upid; wait $upid
[ "$mode" = on ] && cat $dir/udp
rm -rf $dir
