#!/usr/bin/env bash
# Issue 18's GPU check in one run (<= 8 minutes): the batched training path against the per-member path on cuda,
# the training benchmark against eai-sparsify (S = 1, 4, 8, 16; shapes 768x32K k32, 4096x131K k32 and k192),
# and exact cross-seed alignment (`compare`'s matching: decoder + encoder + MMCS) at 131,072 x 4096 on cuda.
# Everything it writes goes under $OUT (default benchmarks/out/gpu): env.txt, check+bench JSON, logs.
#
# On the device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# .whl holds the wheels the device image lacks (sparsify and what its __init__ imports), made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     eai-sparsify==1.3.3 simple-parsing==0.1.9 docstring_parser==0.18.0 natsort==8.4.0 schedulefree==1.4.1 \
#     datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# Without .whl the sparsify column is left out (the rest still runs).
set -uo pipefail
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-470}   # seconds for the whole script
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu TRAIN_ARGS="--shape 64:1024:16 --seeds 1 2" ALIGN_SIZES=4096:64 tries it here
TRAIN_ARGS=${TRAIN_ARGS:---preset gpu --batch-size 8192}
ALIGN_SIZES=${ALIGN_SIZES:-131072:4096}
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

{ date -u; nvidia-smi; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
  >"$OUT/env.txt" 2>&1
SPARSIFY=""
if $PY -c "import sparsify" >>"$OUT/env.txt" 2>&1; then SPARSIFY="--against-sparsify"; fi

# The alignment's inputs are made on the CPU while the GPU trains (bench_align caches them in benchmarks/out/).
mkdir -p benchmarks/out
$PY benchmarks/bench_align.py --generate "$ALIGN_SIZES" >"$OUT/bench_align.log" 2>&1 &
GENERATE=$!

# 1 + 2: exactness on cuda (tiny shapes, bf16 autocast as training would run), then the step benchmark.
timeout $(( $(left) - 200 )) $PY benchmarks/bench_train.py --check --device "$DEVICE" --dtype bfloat16 \
  --tf32 $SPARSIFY $TRAIN_ARGS --steps 5 --warmup 2 --reps 2 --out "$OUT/bench_train_gpu.json" \
  2>&1 | tee "$OUT/bench_train.log"
echo "bench_train exit ${PIPESTATUS[0]}, $(left) s left" | tee -a "$OUT/bench_train.log"

# 3: alignment at 131,072 x 4096 on cuda (inputs generated on the CPU first, by bench_align itself).
wait $GENERATE; echo "inputs generated (exit $?), $(left) s left" | tee -a "$OUT/bench_align.log"
if [ "$(left)" -gt 60 ]; then
  timeout $(( $(left) - 10 )) $PY benchmarks/bench_align.py --sizes "$ALIGN_SIZES" --device "$DEVICE" --threads 16 \
    --progress 2>&1 | tee -a "$OUT/bench_align.log"
  echo "bench_align exit ${PIPESTATUS[0]}, $(left) s left" | tee -a "$OUT/bench_align.log"
  cp benchmarks/out/bench_align.json "$OUT/bench_align_gpu.json" 2>/dev/null || true
else
  echo "bench_align skipped: $(left) s left" | tee -a "$OUT/bench_align.log"
fi
