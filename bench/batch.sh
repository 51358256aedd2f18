#!/usr/bin/env bash
# The batch lane at scale (issue 17): ROWS rows (20,000) through `orbatch run --lane batch`
# against a separate `orbatch mock-server` whose batches finish BATCH_MS after submit, split
# into 5 batches (ORBATCH_BATCH_MAX_REQUESTS=4000). Prints one line: wall time, orbatch CPU
# (user+sys: the time spent outside waiting), peak RSS, records, batches and lines submitted.
# Needs: bash, python3, curl, GNU time (/usr/bin/time). Builds --release unless BIN is set.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-20000}
BATCH_MS=${BATCH_MS:-5000}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/orbatch
fi
export OPENROUTER_API_KEY=bench-key   # the mock accepts any key
WORK=$(mktemp -d)
MOCK_PID=
trap '[ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$ROWS" >"$WORK/in.jsonl" <<'PY'
import json, sys
for n in range(1, int(sys.argv[1]) + 1):
    print(json.dumps({"id": f"r{n}", "prompt": f"Say something short about item {n}."}))
PY
"$BIN" mock-server --port 0 --batch-ms "$BATCH_MS" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
MOCK_URL=
for _ in $(seq 100); do
  MOCK_URL=$(sed -n 's/^listening on //p' "$WORK/mock.log" 2>/dev/null || true)
  [ -n "$MOCK_URL" ] && break
  sleep 0.1
done
[ -n "$MOCK_URL" ] || { echo "the mock did not start" >&2; exit 1; }
ORBATCH_BATCH_MAX_REQUESTS=${PER_BATCH:-4000} ORBATCH_BATCH_POLL_MS=1000 \
  /usr/bin/time -o "$WORK/time" -f "%e %U %S %M" \
  "$BIN" run -i "$WORK/in.jsonl" -o "$WORK/out.jsonl" -m bench/model -q --lane batch \
  --base-url "$MOCK_URL" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
read -r wall user sys rss <"$WORK/time"
stats=$(curl -s "$MOCK_URL/_mock/stats")
python3 - "$wall" "$user" "$sys" "$rss" "$BATCH_MS" "$WORK/out.jsonl" "$stats" <<'PY'
import json, sys
wall, user, sys_, rss, batch_ms = (float(x) for x in sys.argv[1:6])
recs = [json.loads(l) for l in open(sys.argv[6])]
ok = sum(r["status"] == "ok" and r.get("lane") == "batch" for r in recs)
stats = json.loads(sys.argv[7])
print(f"rows {len(recs)} ok {ok}; batches {stats['batch_submits']} lines {stats['batch_lines']}; "
      f"wall {wall:.2f} s (batches finish {batch_ms/1000:.1f} s after submit); "
      f"orbatch CPU (outside waiting) {user + sys_:.2f} s = user {user:.2f} + sys {sys_:.2f}; "
      f"peak RSS {rss/1024:.1f} MB")
PY
