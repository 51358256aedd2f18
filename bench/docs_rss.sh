#!/usr/bin/env bash
# Peak RSS of the document input's passes: N files of 200 KB of text each, N = 100 and 1000,
# through `orbatch plan` (the validation pass plus the request pass, no network: --mock) and
# `orbatch run --mock` (every request sent to the in-process mock). Flat means the texts are
# never held together. Usage: bash bench/docs_rss.sh [path/to/orbatch]  (default: debug build)
set -euo pipefail
bin=${1:-target/debug/orbatch}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 200 KB of sentences (a paragraph every 10 sentences).
python3 - "$work/text" <<'PY'
import sys
words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
out, n = [], 0
while sum(len(s) for s in out) < 200_000:
    out.append(" ".join(words[(n + i) % 12] for i in range(12)).capitalize() + ". ")
    n += 1
    if n % 10 == 0:
        out.append("\n\n")
open(sys.argv[1], "w").write("".join(out)[:200_000])
PY
for n in 100 1000; do
  mkdir -p "$work/d$n"
  for i in $(seq 1 "$n"); do cp "$work/text" "$work/d$n/doc$i.md"; done
done
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F: '/Maximum resident/ {print $2/1024 " MB"}'; }
for n in 100 1000; do
  echo "plan, $n files of 200 KB: $(rss "$bin" plan -i "$work/d$n" --mock -m openai/gpt-4o-mini \
    --template '{{ text }}' -p max_tokens=16)"
  echo "run --mock -j 32, $n files of 200 KB: $(rss "$bin" run -i "$work/d$n" --mock -q -j 32 \
    -m openai/gpt-4o-mini --template '{{ text }}' -p max_tokens=16 -o "$work/out$n.jsonl")"
done
