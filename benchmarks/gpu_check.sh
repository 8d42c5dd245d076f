#!/usr/bin/env bash
# The GPU check in one go (sized for about 8 minutes on one H100/H200-class GPU, not yet measured on one; see benchmarks/gpu_check.py):
#   bash benchmarks/gpu_check.sh --out results/gpu          # then copy results/gpu/summary.md into benchmarks/README.md
#   bash benchmarks/gpu_check.sh --tiny --out /tmp/tiny     # CPU dry run of the same code (the tests run it)
# Then the ResNet-18 recipe's epoch against a bare loop (benchmarks/bench_epoch.py; whole epochs of 50,000
# images on the GPU, a few CPU steps with --tiny), printed and appended to <out>/summary.md.
# Uses the Python that holds torch: $PYTHON, else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
out="" tiny=0 prev=""
for arg in "$@"; do
  [ "$prev" = "--out" ] && out="$arg"
  case "$arg" in --out=*) out="${arg#--out=}" ;; --tiny) tiny=1 ;; -h|--help) exec "$PYTHON" benchmarks/gpu_check.py "$@" ;; esac
  prev="$arg"
done
"$PYTHON" benchmarks/gpu_check.py "$@"
status=$?
case "$status" in 0|1) ;; *) exit "$status" ;; esac  # 2: bad arguments, nothing ran
if [ "$tiny" = 1 ]; then
  epoch_args=(--recipes resnet18 --device cpu --epochs 2 --resnet-steps 1 --test 64)
else
  epoch_args=(--recipes resnet18 --device gpu --epochs 3 --resnet-steps 0)
fi
echo "== epoch against a bare loop: bench_epoch.py ${epoch_args[*]}"
if [ -n "$out" ]; then
  mkdir -p "$out"
  { echo; echo "## Epoch against a bare loop (benchmarks/bench_epoch.py ${epoch_args[*]})"; echo; } >> "$out/summary.md"
  "$PYTHON" benchmarks/bench_epoch.py "${epoch_args[@]}" 2>"$out/bench_epoch.log" | tee -a "$out/summary.md"
else
  "$PYTHON" benchmarks/bench_epoch.py "${epoch_args[@]}"
fi
epoch_status=${PIPESTATUS[0]}
[ "$status" = 0 ] && [ "$epoch_status" = 0 ] && exit 0
exit 1
