#!/usr/bin/env bash
# The bundled default model, from the photos to src/alit/assets/default, in one command on a CPU
# (about 135 minutes on 2 cores; each stage has a wall-clock budget, see the recipes; the shipped
# model had three more legs, see benchmarks/results/default_model_log.md, sections 9 and 10):
#
#   benchmarks/train_default_cpu.sh [WORK_DIR]        # default WORK_DIR: runs/default
#
# 1. `alit data photos` (273 training / 48 held-out photos), the training ones shrunk to 128 px
# 2. `alit train base --config default`      the KL-VAE (60 min)
# 3. `alit train distill --config default`   stage 1 (55 min)
# 4. `alit train finetune --config default`  stage 2 (15 min)
# 5. benchmarks/export_default.py            the length rule (ssim:S+gain:G, as the shipped model), calibrated on the training photos only,
#                                            and the model written to EXPORT (default: the bundled folder)
# 6. `alit demo`                             the figures on the held-out photos, WORK_DIR/demo
# A stage whose run folder exists is resumed (`--resume`), so a killed run loses at most one
# checkpoint interval; a finished stage is skipped. Environment: PYTHON (default python3),
# EXPORT (default src/alit/assets/default), and any of BASE_SET / DISTILL_SET / FINETUNE_SET
# (space-separated key=value overrides, e.g. DISTILL_SET="max_time=600" for a shorter trial).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/default}
PY=${PYTHON:-python3}
EXPORT=${EXPORT:-src/alit/assets/default}
mkdir -p "$W"
start=$(date +%s)
say() { echo "[$(date +%H:%M:%S), $(( ($(date +%s) - start) / 60 )) min] $*"; }

[ -d "$W/photos/train" ] || $PY -m alit data photos --out "$W/photos"
$PY benchmarks/shrink_photos.py "$W/photos/train" "$W/small/train"

stage() {  # stage NAME RUN ARGS... : train unless the run has its final model
  local name=$1 run=$2 sets=$3
  shift 3
  if [ -f "$run/done" ]; then say "$name: done already ($run)"; return; fi
  local resume=()
  [ -d "$run/checkpoints" ] && resume=(--resume)
  say "$name: training into $run"
  # shellcheck disable=SC2086
  $PY -m alit train "$name" --config default --data "$W/small/train" --out "$run" --no-progress \
      "${resume[@]}" "$@" ${sets:+--set $sets}
  touch "$run/done"
}
stage base "$W/base" "${BASE_SET:-}"
stage distill "$W/distill" "${DISTILL_SET:-}" --base "$W/base"
stage finetune "$W/finetune" "${FINETUNE_SET:-}" --init "$W/distill"
say "export: the length rule from the training photos -> $EXPORT"
$PY benchmarks/export_default.py "$W/finetune" --data "$W/small/train" --out "$EXPORT" --rule ssim --stall | tee "$W/export.json"
$PY -m alit demo --checkpoint "$EXPORT" --out "$W/demo"
say "finished: $W/demo/index.html"
