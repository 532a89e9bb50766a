#!/usr/bin/env bash
# One prepared run on a GPU machine (H100/H200): benchmarks, then the active-learning experiment on
# MSRS (downscaled copy in gpu_carry/msrs), one process per strategy in parallel, with a deadline.
# Results land in $OUT (curves.csv / curves.png / summary.md per task, gpu_bench.json, log.txt).
#   usage (from the repo root): OUT=/tmp/out TOTAL_SECONDS=435 bash bench/gpu_experiment.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/msmine_gpu_out}
TOTAL_SECONDS=${TOTAL_SECONDS:-435}  # AL processes are stopped at START + this
mkdir -p "$OUT"
LOG="$OUT/log.txt"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site gpu_carry/whl/*.whl 2>/dev/null \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
nvidia-smi -L || true
${PY:-python3} -c "import torch, cv2, yaml, tqdm, matplotlib, pycocotools; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 1
DATA=${DATA:-gpu_carry/msrs}

echo "== benchmarks ($(($(date +%s) - START)) s)"
[ -n "${SKIP_BENCH:-}" ] || timeout 150 ${PY:-python3} bench/gpu_bench.py --data "$DATA" --out "$OUT/gpu_bench.json"

echo "== active learning ($(($(date +%s) - START)) s)"
RUNS=/tmp/al_runs
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p $RUNS
DET="--data $DATA --task detect --initial ${DET_B:-50} --step ${DET_B:-50} --budget ${DET_BUDGET:-300} --device ${AL_DEVICE:-cuda}
  --set data.workers=0 --set batch_size=16 --set cycle_epochs=${DET_EPOCHS:-15} --set min_cycle_steps=80
  --set supervised_epochs=${SUP_EPOCHS:-15} --set eval_splits=[all,night] ${EXTRA:-}"
SEG="--data $DATA --task segment --initial ${SEG_B:-25} --step ${SEG_B:-25} --budget ${SEG_BUDGET:-175} --device ${AL_DEVICE:-cuda}
  --set data.workers=0 --set batch_size=16 --set cycle_epochs=${SEG_EPOCHS:-15} --set min_cycle_steps=60
  --set supervised_epochs=${SUP_EPOCHS:-15} --set eval_splits=[all,night] ${EXTRA:-}"
PIDS=()
# one process per (strategy, seed): the small model leaves the GPU mostly idle, the CPU does the rest
for seed in $(seq 0 $((${SEEDS:-3} - 1))); do
  for s in ${DET_STRATEGIES:-random inconsistency entropy combined}; do
    ${PY:-python3} -m msmine.train.cli_al $DET --strategies $s --first-seed $seed --seeds 1 --reference no \
      --out $RUNS/det_${s}_$seed > $RUNS/det_${s}_$seed.log 2>&1 &
    PIDS+=($!)
  done
  if [ -n "${DET_BINARY:-}" ]; then  # variant: binary (person/foreground) inconsistency instead of categorical
    ${PY:-python3} -m msmine.train.cli_al $DET --strategies inconsistency --tag=-binary --set model.score_kind=binary \
      --first-seed $seed --seeds 1 --reference no --out $RUNS/det_binary_$seed > $RUNS/det_binary_$seed.log 2>&1 &
    PIDS+=($!)
  fi
done
${PY:-python3} -m msmine.train.cli_al $DET --reference only --out $RUNS/det_supervised > $RUNS/det_supervised.log 2>&1 &
PIDS+=($!)
for seed in $( [ -z "${SKIP_SEG:-}" ] && seq 0 $((${SEEDS:-3} - 1))); do
  for s in random inconsistency; do
    nice -n 10 ${PY:-python3} -m msmine.train.cli_al $SEG --strategies $s --first-seed $seed --seeds 1 --reference no \
      --out $RUNS/seg_${s}_$seed > $RUNS/seg_${s}_$seed.log 2>&1 &
    PIDS+=($!)
  done
done
if [ -z "${SKIP_SEG:-}" ]; then
  nice -n 10 ${PY:-python3} -m msmine.train.cli_al $SEG --reference only --out $RUNS/seg_supervised > $RUNS/seg_supervised.log 2>&1 &
  PIDS+=($!)
fi
merge() {
  ${PY:-python3} -m msmine.train.cli_al --task detect --merge $RUNS/det_*/ --out "$OUT/det" > /dev/null 2>&1 || true
  [ -n "${SKIP_SEG:-}" ] || ${PY:-python3} -m msmine.train.cli_al --task segment --merge $RUNS/seg_*/ --out "$OUT/seg" > /dev/null 2>&1 || true
}
DEADLINE=$((START + TOTAL_SECONDS))
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
  alive=0
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 5
  [ $(( ($(date +%s) - START) % 60 )) -lt 5 ] && merge  # partial results survive a cut-off
done
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
sleep 2
echo "== merge ($(($(date +%s) - START)) s)"
${PY:-python3} -m msmine.train.cli_al --task detect --merge $RUNS/det_*/ --out "$OUT/det" || true
${PY:-python3} -m msmine.train.cli_al --task segment --merge $RUNS/seg_*/ --out "$OUT/seg" || true
for f in $RUNS/*.log; do echo "---- $f"; grep -v "it/s" "$f" | tail -12; done
echo "== done ($(($(date +%s) - START)) s)"
