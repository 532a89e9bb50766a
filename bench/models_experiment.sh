#!/bin/bash
# The models experiment as run for docs/results.md ("Models", 2026-12-02, this 2-core CPU, no GPU):
# every arm appends its rows to docs/results/models.csv. One single-threaded job per core
# (OMP_NUM_THREADS=1); the full-supervision segmentation CE run had both cores (2 threads).
set -e
cd "$(dirname "$0")/.."
X="bench/models_experiment.py"
PY=.venv/bin/python
SEG="--task segment --config configs/segment_lite0.yaml"
DET="--task detect --config configs/detect_lite0.yaml"
# full supervision (866 labelled pairs; 217 validation pairs in 40-frame blocks; test once, best.pt by val)
$PY $X $SEG --recipe cpu --init imagenet --labelled 0 --seed 0 --out runs/models/seg_cpu_imagenet_all_s0 --test \
    --set epochs=6 --set eval_every=2 --set model.freeze_stages=3
OMP_NUM_THREADS=1 $PY $X $DET --recipe cpu --init imagenet --labelled 0 --seed 0 --out runs/models/det_cpu_imagenet_all_s0 \
    --test --set epochs=4 --set eval_every=2 --set model.freeze_stages=3
# a recipe candidate, decided on validation only (it lost: no test figure)
OMP_NUM_THREADS=1 $PY $X $SEG --recipe cpu-ohem --init imagenet --labelled 0 --seed 0 \
    --out runs/models/seg_cpuohem_imagenet_all_s0 --set epochs=3 --set eval_every=3 --set model.freeze_stages=3 \
    --set model.seg_loss=ohem
# 50 labelled pairs: the same 50 pairs for both inits of a seed; one recipe (40 steps, OHEM)
for s in 0 1 2; do
  for init in imagenet scratch; do
    fz=3; [ $init = scratch ] && fz=0   # random frozen stages would be meaningless: scratch trains all
    OMP_NUM_THREADS=1 $PY $X $SEG --recipe cpu-50 --init $init --labelled 50 --seed $s \
        --out runs/models/seg_cpu50_${init}_s$s --test --set max_steps=40 --set eval_every=100 \
        --set model.freeze_stages=$fz --set model.seg_loss=ohem
  done
done
# 2026-12-03: the fast CPU recipes (frozen, cached ImageNet Lite0; configs/*_lite0_cached.yaml), full supervision.
# Segmentation loss decided on validation first (seed 0: plain CE vs class-weighted CE; rows into a scratch CSV,
# then appended to models.csv with the chosen arm named cpu-fast); then the chosen recipe on test, 3 seeds.
# (The configs have since moved to the settings chosen below; the --set overrides restore the ones measured here.)
SEGF="--task segment --config configs/segment_lite0_cached.yaml --init imagenet --labelled 0 --set epochs=12 --set eval_every=3"
for loss in ce wce; do
  OMP_NUM_THREADS=1 $PY $X $SEGF --recipe cpu-fast-$loss --seed 0 --out runs/models/seg_cpufast_${loss}_s0 \
      --set model.seg_loss=$loss --csv runs/models/seg_val.csv
done
tail -n +2 runs/models/seg_val.csv | sed 's/cpu-fast-wce/cpu-fast/' >> docs/results/models.csv
OMP_NUM_THREADS=1 $PY $X $SEGF --recipe cpu-fast --seed 0 --out runs/models/seg_cpufast_wce_s0 --eval-only
for s in 1 2; do
  OMP_NUM_THREADS=1 $PY $X $SEGF --recipe cpu-fast --seed $s --out runs/models/seg_cpufast_wce_s$s --test
done
for s in 0 1 2; do
  OMP_NUM_THREADS=1 $PY $X --task detect --config configs/detect_lite0_cached.yaml --recipe cpu-fast --init imagenet \
      --labelled 0 --seed $s --out runs/models/det_cpufast_imagenet_all_s$s --test \
      --set 'model.input_size=[256,320]' --set epochs=24 --set data.feature_cache_mb=6144
done
# 2026-12-03 (later): two schedule/resolution candidates on validation, seed 0 (rows into a scratch CSV, appended
# to models.csv): detection at 480x384 for 12 epochs, segmentation for 24 epochs. Both won on validation, became
# the configs' settings, and seed 0 was evaluated on test (seeds 1 and 2: the next block).
OMP_NUM_THREADS=1 $PY $X --task detect --config configs/detect_lite0_cached.yaml --recipe cpu-fast-480x384-12ep \
    --init imagenet --labelled 0 --seed 0 --out runs/models/det_cpufast_480_s0 --csv runs/models/val_extra.csv &
OMP_NUM_THREADS=1 $PY $X --task segment --config configs/segment_lite0_cached.yaml --recipe cpu-fast-24ep \
    --init imagenet --labelled 0 --seed 0 --out runs/models/seg_cpufast_24ep_s0 --csv runs/models/val_extra.csv &
wait
OMP_NUM_THREADS=1 $PY $X --task detect --config configs/detect_lite0_cached.yaml --recipe cpu-fast-480x384-12ep \
    --init imagenet --labelled 0 --seed 0 --out runs/models/det_cpufast_480_s0 --eval-only --csv runs/models/test_extra.csv
OMP_NUM_THREADS=1 $PY $X --task segment --config configs/segment_lite0_cached.yaml --recipe cpu-fast-24ep \
    --init imagenet --labelled 0 --seed 0 --out runs/models/seg_cpufast_24ep_s0 --eval-only --csv runs/models/test_extra.csv
tail -n +2 runs/models/val_extra.csv >> docs/results/models.csv
tail -n +2 runs/models/test_extra.csv >> docs/results/models.csv
$PY bench/models_table.py
# 2026-12-03 (session 10): seeds 1 and 2 of the current settings on test (rows into scratch CSVs, then appended).
for s in 1 2; do
  OMP_NUM_THREADS=1 $PY $X --task detect --config configs/detect_lite0_cached.yaml --recipe cpu-fast-480x384-12ep \
      --init imagenet --labelled 0 --seed $s --out runs/models/det_cpufast_480_s$s --test --csv runs/models/seeds_det_s$s.csv &
done
wait
for s in 1 2; do
  OMP_NUM_THREADS=1 $PY $X --task segment --config configs/segment_lite0_cached.yaml --recipe cpu-fast-24ep \
      --init imagenet --labelled 0 --seed $s --out runs/models/seg_cpufast_24ep_s$s --test --csv runs/models/seeds_seg_s$s.csv &
done
wait
for s in 1 2; do tail -n +2 runs/models/seeds_det_s$s.csv >> docs/results/models.csv; done
for s in 1 2; do tail -n +2 runs/models/seeds_seg_s$s.csv >> docs/results/models.csv; done
# 50 labelled pairs (segmentation, the fast recipe run 60 epochs = 360 steps, eval every 10, best.pt by validation):
# ImageNet against ImageNet + msmine pretrain (the config, 600 steps, on MSRS train-pool + M3SVD pairs, never test), 3 seeds,
# the same 50 pairs for both arms of a seed.
OMP_NUM_THREADS=2 .venv/bin/msmine pretrain --data ../shared/data/msrs/train --data ../shared/data/m3svd \
    --config configs/pretrain_lite0.yaml --out runs/pretrain_lite0
SMALL="--task segment --config configs/segment_lite0_cached.yaml --labelled 50 --test --set epochs=60 --set eval_every=10"
# pretrain_arms RECIPE NAME [--set ...]: for seeds 0-2, the ImageNet and the ImageNet + pretrain arm side by side (one
# core each), into runs/models/seg_NAME_{imagenet,pretrain}_sS and NAME_*_sS.csv; then the rows into models.csv.
pretrain_arms() {
  local recipe=$1 name=$2; shift 2
  for s in 0 1 2; do
    OMP_NUM_THREADS=1 $PY $X $SMALL "$@" --recipe $recipe --init imagenet --seed $s \
        --out runs/models/seg_${name}_imagenet_s$s --csv runs/models/${name}_imagenet_s$s.csv &
    OMP_NUM_THREADS=1 $PY $X $SMALL "$@" --recipe $recipe --init runs/pretrain_lite0/pretrain.pt --seed $s \
        --out runs/models/seg_${name}_pretrain_s$s --csv runs/models/${name}_pretrain_s$s.csv &
    wait
  done
  for f in runs/models/${name}_*_s?.csv; do tail -n +2 $f >> docs/results/models.csv; done
  $PY bench/models_table.py
}
pretrain_arms cpu-fast-60ep fast50
# The scratch arm of the same 50-pair experiment: the same recipe, no ImageNet weights, so the backbone is trained
# too (nothing frozen, no cache: random frozen features would be meaningless). Seeds 0 and 1 only (session time).
for s in 0 1; do
  OMP_NUM_THREADS=1 $PY $X $SMALL --recipe cpu-fast-60ep --init scratch --seed $s --set model.freeze_stages=0 \
      --set data.feature_cache_mb=0 --out runs/models/seg_fast50_scratch_s$s --csv runs/models/scratch50_s$s.csv &
done
wait
for s in 0 1; do tail -n +2 runs/models/scratch50_s$s.csv >> docs/results/models.csv; done
# 2026-12-04 (session 11): the same 50-pair experiment with the backbone fine-tuned (stages 3-7 train at 0.1x the
# learning rate; stem + stages 1-2 frozen and cached, as msmine pretrain keeps them), so the pre-trained stages are
# adapted rather than used frozen. Same 50 pairs, schedule and evaluation as above; 3 seeds; a fresh pretrain.pt
# from the command above (same config, seed 0).
pretrain_arms cpu-ft-60ep ft50 --set model.freeze_stages=2 --set optim.backbone_lr_mult=0.1
