#!/bin/bash
# What the counters cost: alternating pairs of `mdbench.sh on` with a build
# before the metrics ($BEFORE) and this one (target/release/matching-engine,
# its /metrics scraped once a second); docs/BENCHMARKS.md ("Operating it").
# usage: BEFORE=/path/to/old/matching-engine opsbench.sh [pairs] [first: before|after]
cd "$(dirname "$0")/.."
pairs=${1:-3}; first=${2:-before}
args="--connections 4 --window 1000 --commands 500000"
summary() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["answered_per_s"], d["latency_us"]["p50"], d["latency_us"]["p99"])'; }
before() { BIN=$BEFORE scripts/mdbench.sh on $args 2>/dev/null | head -1 | summary; }
after() {
  (while sleep 1; do curl -s -o /dev/null -w '%{time_total}\n' 127.0.0.1:7702/metrics >> scrape-times.txt; done) &
  local scraper=$!
  BIN=target/release/matching-engine scripts/mdbench.sh on $args 2>/dev/null | head -1 | summary
  kill $scraper
}
for i in $(seq "$pairs"); do
  if [ "$first" = before ]; then b=$(before); a=$(after); else a=$(after); b=$(before); fi
  echo "pair $i before $b after $a"
done
echo "scrape times (s): $(sort -n scrape-times.txt | tr '\n' ' ')"; rm -f scrape-times.txt
