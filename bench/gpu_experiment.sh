#!/usr/bin/env bash
# One prepared run on a GPU machine (H100/H200): benchmarks, then the active-learning experiment on
# MSRS (downscaled copy in gpu_carry/msrs), one process per strategy in parallel, with a deadline.
# Results land in $OUT (curves.csv / curves.png / summary.md per task, gpu_bench.json, log.txt).
#   usage (from the repo root): OUT=/tmp/out AL_SECONDS=300 bash bench/gpu_experiment.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/msmine_gpu_out}
AL_SECONDS=${AL_SECONDS:-300}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site gpu_carry/whl/*.whl 2>/dev/null \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
nvidia-smi -L
python3 -c "import torch, cv2, yaml, tqdm, matplotlib, pycocotools; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
DATA=gpu_carry/msrs

echo "== benchmarks ($(($(date +%s) - START)) s)"
timeout 150 python3 bench/gpu_bench.py --data "$DATA" --out "$OUT/gpu_bench.json"

echo "== active learning ($(($(date +%s) - START)) s)"
RUNS=/tmp/al_runs
mkdir -p $RUNS
DET="--data $DATA --task detect --initial 50 --step 50 --budget 300 --seeds 3 --device cuda
  --set data.workers=1 --set batch_size=16 --set cycle_epochs=${DET_EPOCHS:-15} --set min_cycle_steps=80
  --set supervised_epochs=${SUP_EPOCHS:-15} --set eval_splits=[all,night]"
SEG="--data $DATA --task segment --initial 25 --step 25 --budget 175 --seeds 3 --device cuda
  --set data.workers=1 --set batch_size=16 --set cycle_epochs=${SEG_EPOCHS:-15} --set min_cycle_steps=60
  --set supervised_epochs=${SUP_EPOCHS:-15} --set eval_splits=[all,night]"
PIDS=()
for s in random inconsistency entropy combined; do
  python3 -m msmine.cli al $DET --strategies $s --reference no --out $RUNS/det_$s > $RUNS/det_$s.log 2>&1 &
  PIDS+=($!)
done
python3 -m msmine.cli al $DET --reference only --out $RUNS/det_supervised > $RUNS/det_supervised.log 2>&1 &
PIDS+=($!)
for s in random inconsistency; do
  nice -n 5 python3 -m msmine.cli al $SEG --strategies $s --reference no --out $RUNS/seg_$s > $RUNS/seg_$s.log 2>&1 &
  PIDS+=($!)
done
nice -n 5 python3 -m msmine.cli al $SEG --reference only --out $RUNS/seg_supervised > $RUNS/seg_supervised.log 2>&1 &
PIDS+=($!)
DEADLINE=$(($(date +%s) + AL_SECONDS))
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
  alive=0
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 5
done
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
sleep 2
echo "== merge ($(($(date +%s) - START)) s)"
python3 -m msmine.cli al --task detect --merge $RUNS/det_* --out "$OUT/det" || true
python3 -m msmine.cli al --task segment --merge $RUNS/seg_* --out "$OUT/seg" || true
for f in $RUNS/*.log; do echo "---- $f"; grep -v "it/s" "$f" | tail -40; done
echo "== done ($(($(date +%s) - START)) s)"
