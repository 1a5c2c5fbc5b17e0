#!/usr/bin/env bash
# Eddy beside Quix Streams (PyPI `quixstreams`, in a virtual environment) on the same embedded
# broker and the same workload — issue 10's keyed count in 1-second tumbling windows over
# 10 000 keys — in both emit modes (Quix `.final()` / `.current()`) and both guarantees, each
# with its tool's default commit interval. Prints one Markdown table with Eddy's ratio.
#   bash benches/peers/run.sh            (RECORDS=100000 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
RECORDS="${RECORDS:-100000}"
VENV="${EDDY_PEERS_VENV:-$HOME/.cache/eddy-peers-venv}"
QUIX_VERSION="${QUIX_VERSION:-3.28.1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy-target-release}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q "quixstreams==$QUIX_VERSION"

cargo build --release -q -p eddy-topologies --bin eddy
cargo bench -q -p eddy-benches --bench peers --no-run 2>/dev/null

log="$(mktemp)"
"$CARGO_TARGET_DIR/release/eddy" broker --port 0 --default-partitions 3 >"$log" 2>&1 &
broker_pid=$!
trap 'kill $broker_pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
bootstrap="$(sed -n 's/.*listening on \(.*\)/\1/p' "$log" | head -1)"
[ -n "$bootstrap" ] || { echo "the broker did not start: $(cat "$log")" >&2; exit 1; }

"$VENV/bin/python" benches/peers/produce.py --bootstrap "$bootstrap" --topic peers-events --records "$RECORDS"

echo "| $RECORDS records, 3 partitions | Quix Streams $QUIX_VERSION records/s | Eddy records/s | Eddy / Quix |"
echo "|---|---:|---:|---:|"
for emit in final current; do
  for guarantee in at-least-once exactly-once; do
    quix="$("$VENV/bin/python" benches/peers/quix_app.py --bootstrap "$bootstrap" \
      --input peers-events --output "quix-out-$emit-$guarantee" \
      --emit "$emit" --guarantee "$guarantee" --records "$RECORDS" 2>/dev/null | tail -1)"
    eddy="$(cargo bench -q -p eddy-benches --bench peers -- --bootstrap "$bootstrap" \
      --input peers-events --output "eddy-out-$emit-$guarantee" \
      --emit "$emit" --guarantee "$guarantee" --records "$RECORDS" 2>/dev/null | tail -1)"
    ratio="$(python3 -c "print(f'{$eddy / $quix:.1f}×')")"
    echo "| .$emit(), $guarantee | $quix | $eddy | $ratio |"
  done
done
