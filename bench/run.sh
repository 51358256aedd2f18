#!/usr/bin/env bash
# orbatch benchmark harness: builds --release, runs orbatch against local `orbatch mock-server`s
# and writes the results table to BENCHMARKS.md (at the repository root).
#
#   bash bench/run.sh            # full run (~15-20 min on 2 cores)
#   bash bench/run.sh --quick    # smaller sizes, shorter runs (~2-3 min): a smoke test
#   bash bench/run.sh --no-build # use target/release/orbatch as it is
#
# Needs: bash, python3, GNU time (/usr/bin/time; Debian: apt-get install -y time), and a load
# generator for the mock-capacity and CPU rows: wrk (Debian: apt-get install -y wrk) or oha
# (cargo install oha --locked). Rows whose tool is missing are skipped with a note.
set -euo pipefail

QUICK=0
BUILD=1
OUT_MD=BENCHMARKS.md
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out=*) OUT_MD="${arg#--out=}" ;;
    *) echo "usage: bash bench/run.sh [--quick] [--no-build] [--out=FILE]" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="python3 $ROOT/bench/analyze.py"
BIN="${ORBATCH_BIN:-$ROOT/target/release/orbatch}"  # ORBATCH_BIN=path: benchmark another build
WORK="$(mktemp -d "${TMPDIR:-/tmp}/orbatch-bench.XXXXXX")"
export OPENROUTER_API_KEY=bench-key   # the mock accepts any key
MOCK_PIDS=()
cleanup() {
  for p in "${MOCK_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$QUICK" = 1 ]; then
  EFF_SECS=3; RATE_SECS=5; CPU_ROWS=5000; MEM_SIZES="10000 100000"; TOOL_SECS=3; LIMIT_ROWS=300
  BUCKET_ROWS="300"
else
  EFF_SECS=10; RATE_SECS=20; CPU_ROWS=50000; MEM_SIZES="10000 100000 1000000"; TOOL_SECS=10; LIMIT_ROWS=3000
  BUCKET_ROWS="300 3000"
fi

if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release" >&2
  cargo build --release --quiet
fi
[ -x "$BIN" ] || { echo "no $BIN; run without --no-build" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install -y time)" >&2; exit 1; }

# start_mock LATENCY_MS [MOCK-SERVER FLAGS...] → sets MOCK_URL and MOCK_PID
start_mock() {
  local log="$WORK/mock.$RANDOM.log" lat=$1; shift
  "$BIN" mock-server --port 0 --latency-ms "$lat" "$@" >"$log" 2>&1 &
  MOCK_PID=$!
  MOCK_PIDS+=("$MOCK_PID")
  for _ in $(seq 100); do
    MOCK_URL=$(sed -n 's/^listening on //p' "$log" 2>/dev/null || true)
    [ -n "$MOCK_URL" ] && return 0
    sleep 0.05
  done
  echo "mock server did not start: $(cat "$log")" >&2; exit 1
}
# mock_stats → the mock's /_mock/stats JSON
mock_stats() { python3 -c "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/_mock/stats').read().decode())" "$MOCK_URL"; }
stop_mock() { kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; }

# timed RESULT_PREFIX cmd... → runs cmd under GNU time; sets T_WALL T_USER T_SYS T_RSS_KB T_RC
timed() {
  local tf="$WORK/time.txt"
  set +e
  /usr/bin/time -o "$tf" -f "%e %U %S %M" "$@" >"$WORK/cmd.out" 2>"$WORK/cmd.err"
  T_RC=$?
  set -e
  read -r T_WALL T_USER T_SYS T_RSS_KB < <(tail -1 "$tf")
}

json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
calc() { python3 -c "print($1)"; }
fmt() { python3 -c "import sys; print(format(float(sys.argv[1]), sys.argv[2]))" "$1" "$2"; }

BODY='{"model":"bench/model","messages":[{"role":"user","content":"Say something short about item 1."}]}'
ROWS=()   # markdown table rows
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); echo "  $1 | $2 | $3 | $4" >&2; }

# ---------------------------------------------------------------- load generator
# tool_run SECONDS URL [REQUESTS] → sets TOOL_REQS (requests done) and TOOL_CPU (user+sys
# seconds); with REQUESTS, oha stops after that many (wrk always runs SECONDS)
TOOL=""
if command -v oha >/dev/null 2>&1; then TOOL=oha
elif command -v wrk >/dev/null 2>&1; then TOOL=wrk; fi
tool_run() {
  local secs=$1 url=$2 count=${3:-}
  if [ "$TOOL" = wrk ]; then
    cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
LUA
    timed wrk -t1 -c64 -d"${secs}s" -s "$WORK/post.lua" "$url/chat/completions"
    TOOL_REQS=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$WORK/cmd.out")
  else
    # Recent oha (1.16) spells JSON output `--output-format json`; older versions `-j`.
    local json_flag=(-j)
    oha --help 2>/dev/null | grep -q -- --output-format && json_flag=(--output-format json)
    local amount=(-z "${secs}s")
    [ -n "$count" ] && amount=(-n "$count")
    timed oha --no-tui "${json_flag[@]}" "${amount[@]}" -c 64 -m POST -H "Authorization: Bearer bench-key" \
      -T application/json -d "$BODY" "$url/chat/completions"
    TOOL_REQS=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(d['statusCodeDistribution'].values()))" "$WORK/cmd.out")
  fi
  TOOL_CPU=$(calc "$T_USER + $T_SYS")
}

LOADAVG=$(cut -d" " -f1-3 /proc/loadavg)
echo "== orbatch benchmarks ($([ $QUICK = 1 ] && echo quick || echo full)), work dir $WORK" >&2

# ---------------------------------------------------------------- 1. mock capacity
start_mock 0
if [ -n "$TOOL" ]; then
  tool_run "$TOOL_SECS" "$MOCK_URL"
  CAP=$(calc "$TOOL_REQS / $TOOL_SECS")
  row "mock server capacity (latency 0, $TOOL 64 connections, ${TOOL_SECS}s)" "$(fmt "$CAP" .0f) req/s" \
      "≫ 10 240 (what -j 1024 at 100 ms needs)" "$TOOL_REQS requests"
else
  row "mock server capacity" "skipped" "-" "no load generator: apt-get install -y wrk, or cargo install oha --locked"
fi

# ---------------------------------------------------------------- 2. CPU per request (latency 0)
# Three rounds, orbatch and the load generator interleaved, each against a fresh mock and (oha)
# for the same number of requests: a mock that has stored a few hundred thousand generations
# answers less evenly, and fewer answers per wake-up cost the client more CPU per request.
# The medians are compared (one run on a shared machine can be 50 % off).
stop_mock
$PY gen "$CPU_ROWS" "$WORK/cpu.jsonl"
ORB_US=(); TOOL_USS=(); ORB_RATES=()
for round in 1 2 3; do
  rm -f "$WORK/cpu.out.jsonl"
  start_mock 0
  timed "$BIN" run -i "$WORK/cpu.jsonl" -m bench/model -j 64 -q --base-url "$MOCK_URL" -o "$WORK/cpu.out.jsonl"
  ORB_US+=("$(fmt "$(calc "($T_USER + $T_SYS) / $CPU_ROWS * 1e6")" .1f)")
  ORB_RATES+=("$(calc "$CPU_ROWS / $T_WALL")")
  stop_mock
  if [ -n "$TOOL" ]; then
    start_mock 0
    tool_run "$(( CPU_ROWS / 20000 + 1 ))" "$MOCK_URL" "$CPU_ROWS"
    TOOL_USS+=("$(fmt "$(calc "$TOOL_CPU / $TOOL_REQS * 1e6")" .1f)")
    stop_mock
  fi
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
ORB_CPU=$(median "${ORB_US[@]}")
ORB_RATE=$(median "${ORB_RATES[@]}")
if [ -n "$TOOL" ]; then
  TOOL_US=$(median "${TOOL_USS[@]}")
  row "CPU per request, latency 0, -j 64 ($CPU_ROWS rows; user+sys ÷ requests; median of 3 interleaved rounds, each on a fresh mock, the load generator for as many requests)" \
      "orbatch $(fmt "$ORB_CPU" .1f) µs · $TOOL $(fmt "$TOOL_US" .1f) µs · ratio $(fmt "$(calc "$ORB_CPU / $TOOL_US")" .2f)×" \
      "≤ 2× the load generator" "orbatch whole process (start-up, validation, writing included), $(fmt "$ORB_RATE" .0f) req/s wall; rounds: orbatch ${ORB_US[*]} µs, $TOOL ${TOOL_USS[*]} µs"
else
  row "CPU per request, latency 0, -j 64" "orbatch $(fmt "$ORB_CPU" .1f) µs" "≤ 2× oha" "no load generator to compare"
fi
stop_mock

# ---------------------------------------------------------------- 3. throughput efficiency at 100 ms
for J in 50 256 1024; do
  start_mock 100
  N=$(( J * 10 * EFF_SECS ))
  $PY gen "$N" "$WORK/eff.jsonl"
  timed "$BIN" run -i "$WORK/eff.jsonl" -m bench/model -j "$J" -q --base-url "$MOCK_URL" -o "$WORK/eff.$J.jsonl"
  S=$($PY span "$WORK/eff.$J.jsonl")
  RPS=$(json "$S" rps); IDEAL=$(calc "$J / 0.1"); LAT=$(json "$S" mean_latency_ms)
  row "throughput efficiency, latency 100 ms, -j $J ($N rows)" \
      "$(fmt "$(calc "$RPS / $IDEAL")" .3f) ($(fmt "$RPS" .0f) of $(fmt "$IDEAL" .0f) req/s)" "≥ 0.97" \
      "rate = records ÷ (last finished_at − first started_at); wall $(fmt "$T_WALL" .1f) s incl. start-up; the mock answered in $(fmt "$LAT" .1f) ms on average, so $J in flight all the time would give $(fmt "$(calc "$J / $LAT * 1000")" .0f) req/s: orbatch kept $(fmt "$(calc "$RPS / ($J / $LAT * 1000)")" .3f) of that"
  stop_mock
done

# ---------------------------------------------------------------- 4. rate precision
for R in 40 500; do
  start_mock 0
  N=$(( R * RATE_SECS ))
  $PY gen "$N" "$WORK/rate.jsonl"
  timed "$BIN" run -i "$WORK/rate.jsonl" -m bench/model -j 64 --rps "$R" -q --base-url "$MOCK_URL" -o "$WORK/rate.$R.jsonl"
  S=$($PY rate "$WORK/rate.$R.jsonl")
  RPS=$(json "$S" rps); PEAK=$(json "$S" peak_1s)
  M=$(mock_stats)
  row "rate precision, --rps $R (burst 1), $N rows ≈ ${RATE_SECS} s" \
      "$(fmt "$RPS" .2f) req/s ($(fmt "$(calc "($RPS / $R - 1) * 100")" +.2f) %), peak $PEAK in any 1 s; at the mock: peak $(json "$M" peak_1s)" \
      "within 1 %, peak ≤ $((R + 1))" "send time = finished_at − latency_ms of each (single-attempt) record; the mock counts arrivals in any 1 s (its own scheduling adds jitter)"
  stop_mock
done

# ---------------------------------------------------------------- 4b. server-side rate limits
# orbatch has no --rps and must learn the limit (goals: issue 6 for the window, issue 11 for the
# bucket: under 10 % 429s at 300 rows, 3 % at 3000, over 90 % of the allowed rate).
# limit_row ROWS RATE LABEL GOAL LATENCY_MS [MOCK-SERVER FLAGS...]
limit_row() {
  local rows=$1 rate=$2 label=$3 goal=$4 lat=$5; shift 5
  start_mock "$lat" "$@"
  $PY gen "$rows" "$WORK/limit.jsonl"
  rm -f "$WORK/limit.out.jsonl"
  timed "$BIN" run -i "$WORK/limit.jsonl" -m bench/model -j 64 -q --base-url "$MOCK_URL" -o "$WORK/limit.out.jsonl"
  local m reqs answered n429 ach oks
  m=$(mock_stats)
  reqs=$(json "$m" requests); answered=$(json "$m" answered)
  n429=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['by_status'].get('429', 0))" "$m")
  oks=$(grep -c '"status":"ok"' "$WORK/limit.out.jsonl" || true)
  ach=$(calc "$answered / $T_WALL")
  row "$label, latency $lat ms, no --rps, -j 64, $rows rows" \
      "$(fmt "$(calc "100 * $n429 / $reqs")" .1f) % 429s ($n429 of $reqs requests), $(fmt "$ach" .2f) req/s = $(fmt "$(calc "100 * $ach / $rate")" .1f) % of the limit" \
      "$goal" "achieved = answered ÷ wall time of the whole run (start-up and first burst included); $oks of $rows rows ok, exit $T_RC"
  stop_mock
}
# The server allows 25 requests in any 1 s (over it: 429, Retry-After 1).
limit_row "$LIMIT_ROWS" 25 "server-side limit 25 req/s in any 1 s window, 429 with Retry-After: 1" \
  "≤ 2 % 429s, ≥ 93 % of the limit" 0 --rate-limit 25
# A token bucket (25 a second, 5 saved up), 429s with no hint at all, then with Retry-After.
for rows in $BUCKET_ROWS; do
  goal="< 10 % 429s, ≥ 90 % of the limit"; [ "$rows" -ge 3000 ] && goal="< 3 % 429s, ≥ 90 % of the limit"
  limit_row "$rows" 25 "token bucket 25 req/s, burst 5, 429 with no Retry-After" "$goal" 30 --rate-limit-bucket 25:5
done
for rows in $BUCKET_ROWS; do
  limit_row "$rows" 25 "token bucket 25 req/s, burst 5, 429 with Retry-After: 1" \
    "every row ok (each 429 pauses everyone 1 s)" 30 --rate-limit-bucket 25:5 --retry-after 1
done

# ---------------------------------------------------------------- 4c. memory of run --mock
# The in-process mock keeps no generations: peak RSS must not grow with the rows.
MOCK_RSS=(); MOCK_RC=()
for N in 4000 40000; do
  $PY gen "$N" "$WORK/mock.$N.jsonl"
  timed "$BIN" run -i "$WORK/mock.$N.jsonl" --mock -m a/b -j 256 -q --fresh -o "$WORK/mock.$N.out.jsonl"
  MOCK_RSS+=("$T_RSS_KB")
  MOCK_RC+=("$T_RC")
done
row "peak RSS of run --mock (in-process mock, 120-320 ms latency), -j 256, 4000 → 40000 rows" \
    "$(fmt "$(calc "${MOCK_RSS[0]} / 1024")" .1f) MB → $(fmt "$(calc "${MOCK_RSS[1]} / 1024")" .1f) MB ($(fmt "$(calc "${MOCK_RSS[1]} / ${MOCK_RSS[0]}")" .2f)×)" \
    "≤ 1.2×" "GNU time max RSS of the whole process (orbatch and its mock); exit ${MOCK_RC[*]}"

# ---------------------------------------------------------------- 5. memory and resume
LAST=""
for N in $MEM_SIZES; do
  start_mock 0
  $PY gen "$N" "$WORK/mem.$N.jsonl"
  timed "$BIN" run -i "$WORK/mem.$N.jsonl" -m bench/model -j 256 -q --base-url "$MOCK_URL" -o "$WORK/mem.$N.out.jsonl"
  OKS=$(grep -c '"status":"ok"' "$WORK/mem.$N.out.jsonl" || true)
  row "peak RSS, $N rows, latency 0, -j 256" "$(fmt "$(calc "$T_RSS_KB / 1024")" .1f) MB" "flat, < 64 MB" \
      "$OKS ok records in $(fmt "$T_WALL" .1f) s ($(fmt "$(calc "$N / $T_WALL")" .0f) req/s), exit $T_RC"
  stop_mock
  LAST=$N
done
start_mock 0
timed "$BIN" run -i "$WORK/mem.$LAST.jsonl" -m bench/model -j 256 --base-url "$MOCK_URL" -o "$WORK/mem.$LAST.out.jsonl"
SKIPPED=$(grep -o 'skipped [0-9]*' "$WORK/cmd.err" | head -1 || true)
row "resume: rerun over a $LAST-record output, nothing to send" \
    "$(fmt "$T_WALL" .2f) s, $(fmt "$(calc "$T_RSS_KB / 1024")" .1f) MB peak RSS" "< 2 s" \
    "whole rerun: validate $LAST input rows + scan the output + skip; ${SKIPPED:-?}; exit $T_RC"
stop_mock

# ---------------------------------------------------------------- write BENCHMARKS.md
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git diff --quiet 2>/dev/null || echo " (with uncommitted changes)")
{
  echo "# orbatch benchmarks"
  echo
  echo "Produced by \`bash bench/run.sh$([ $QUICK = 1 ] && echo ' --quick')\` on $(date -u +%Y-%m-%dT%H:%MZ), commit \`$COMMIT\`$DIRTY,"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average before the run: $LOADAVG)."
  echo "Every figure of a row comes from the same run; the machine is shared, so absolute figures are noisy."
  echo
  echo "| measure | result | goal | how |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Method: every orbatch run is \`target/release/orbatch run -i INPUT -m bench/model -q --base-url MOCK\`"
  echo "against a separate \`orbatch mock-server --latency-ms L\` process on loopback (one per row). Inputs are"
  echo "\`{\"id\":\"rN\",\"prompt\":\"Say something short about item N.\"}\` lines. CPU time and peak RSS are GNU"
  echo "time's user+sys and max RSS of the orbatch process only (the \`run --mock\` row: orbatch and its"
  echo "in-process mock). See bench/run.sh and bench/analyze.py. The load generator matters for the CPU row:"
  echo "wrk (C) spends about half of what oha (Rust) does per request, so ratios against one and the other"
  echo "do not compare."
  echo
  echo "Measured once, outside this script (issue 11):"
  echo
  echo "- Release profile (\`lto = \"fat\"\`, \`codegen-units = 1\`, kept in Cargo.toml): the CPU row's"
  echo "  orbatch µs per request, 10 interleaved rounds of today's profile, fat and thin LTO (same source, same"
  echo "  mock binary, fresh mock each): medians 35.6 → 31.4 µs with fat (−12 %, 9 of 10 rounds better) and"
  echo "  32.3 µs with thin (−9 %, 6 of 10). Release build of the orbatch crate after a touch, one after the"
  echo "  other on the same machine: 51.7 s today, 101.5 s fat, 129.1 s thin; from scratch (dependencies"
  echo "  included, under other builds' load, not comparable with each other): 317 s, 721 s, 228 s."
  echo "- \`run --mock\` before its mock kept no generations (commit a7d116b, built with fat LTO): peak RSS 30.6 MB at 4000 rows,"
  echo "  66.4 MB at 40000 (2.17×); after, 3 pairs of runs of a build with the old default profile: 28.6-32.1 MB and 35.0-38.6 MB"
  echo "  (1.13-1.22×); with fat LTO, the row above and 2 more pairs: 29.1 → 31.2, 27.4 → 31.9, 29.8 → 35.2 MB
  (1.07-1.18×). The growth that is left is orbatch's own: 23.2 → 26.4 MB against a separate"
  echo "  mock that keeps none, whose own RSS stays at 18.4 MB. \`mock-server\` keeps the last"
  echo "  \`--keep-generations\` (100 000) for \`/generation\`."
} >"$WORK/bench.md"
case "$OUT_MD" in /*) ;; *) OUT_MD="$ROOT/$OUT_MD" ;; esac
# Keep the section bench/cap.sh writes.
if [ -f "$OUT_MD" ]; then
  python3 - "$OUT_MD" "$WORK/bench.md" <<'EOF'
import re, sys
m = re.search(r"^## --max-cost under other tokenizers\n.*?(?=^## |\Z)", open(sys.argv[1]).read(), re.S | re.M)
if m:
    with open(sys.argv[2], "a") as f:
        f.write("\n" + m.group(0).rstrip("\n") + "\n")
EOF
fi
mv "$WORK/bench.md" "$OUT_MD"
echo "wrote $OUT_MD" >&2
