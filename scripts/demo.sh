#!/usr/bin/env bash
# The main job on the embedded default: merge the four bundled tiny-skills adapters with iteris's
# recommended method (examples/merge4.yaml: the residual-corrected sweep, data-aware truncation,
# every calibration prompt, 30 steps of layer-wise distillation per layer) and evaluate the merged
# adapter on the four tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/merge4}"
go build -o bin/iteris ./cmd/iteris
./bin/iteris merge examples/merge4.yaml "$out" --force
echo
echo "== $out =="
ls -l "$out"
echo
echo "== accuracy of the merged adapter (120 test items per task) =="
./bin/iteris eval --base testdata/tiny-skills/model --adapter "$out" \
  --data testdata/tiny-skills/data/rev/test.jsonl --data testdata/tiny-skills/data/upc/test.jsonl \
  --data testdata/tiny-skills/data/nxt/test.jsonl --data testdata/tiny-skills/data/srt/test.jsonl
