#!/usr/bin/env bash
# The bundled default model, from the photos to src/alit/assets/default, in one command on a CPU:
#
#   benchmarks/train_default_cpu.sh [WORK_DIR]             # default WORK_DIR: runs/default
#
# About 140 minutes on 2 cores (each stage has a wall-clock budget, see the recipes):
# 1. `alit data photos` (273 training / 48 held-out photos), the training ones shrunk to 128 px
# 2. `alit train base --config default`      the KL-VAE (22 min)
# 3. `alit train distill --config default`   stage 1, with error feedback (37 min)
# 4. `alit train finetune --config default`  stage 2, the late iterations more often (66 min)
#    (all three in bf16 autocast on square, unstretched crops)
# 4b. the same recipe from 4's export: 200 steps at lr 6e-5 (about 11 min)
# 5. benchmarks/export_default.py            the length rule (ssim:S+gain:G, as the shipped model), calibrated on the training photos only,
#                                            and the model written to EXPORT (default: the bundled folder)
# 6. `alit demo`                             the figures on the held-out photos, WORK_DIR/demo
# That is the bundled model (log section 22). The model shipped before it (F2, about 600 minutes in
# fourteen legs) was trained by the SHIPPED=1 path of this script, which section 22 retired: its
# commands are in the log's sections 5-19, and in the script as it was in git (commit 49882ac).
#
# A stage whose run folder exists is resumed (`--resume`), so a killed run loses at most one
# checkpoint interval; a finished stage is skipped. Environment: PYTHON (default python3),
# EXPORT (default src/alit/assets/default), and any of BASE_SET / DISTILL_SET / FINETUNE_SET
# (space-separated key=value overrides added to every run of that stage, FINETUNE_SET to the leg too,
# e.g. DISTILL_SET="max_time=600" for a shorter trial).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/default}
PY=${PYTHON:-python3}
EXPORT=${EXPORT:-src/alit/assets/default}
mkdir -p "$W"
start=$(date +%s)
say() { echo "[$(date +%H:%M:%S), $(( ($(date +%s) - start) / 60 )) min] $*"; }

[ -d "$W/photos/train" ] || $PY -m alit data photos --out "$W/photos" --yes  # --yes: may apt-get install two packages
$PY benchmarks/shrink_photos.py "$W/photos/train" "$W/small/train"
n=$(find "$W/small/train" -type f | wc -l)
[ "$n" = 273 ] || say "note: $n training photos; the log's figures were measured on 273 (without foolbox," \
    "pip install --no-deps foolbox==3.3.4, \`alit data photos\` finds 253)"

stage() {  # stage NAME RUN SETS ARGS... : train unless RUN/done exists, resuming RUN if it has checkpoints
  local name=$1 run=$2 sets=$3
  shift 3
  if [ -f "$run/done" ]; then say "$name: done already ($run)"; return; fi
  local resume=()
  [ -d "$run/checkpoints" ] && resume=(--resume)
  say "$name: training into $run${sets:+ with $sets}"
  set -f  # the sets hold brackets (iteration_cycle=[...]): split them on spaces, never glob them
  # shellcheck disable=SC2086
  $PY -m alit train "$name" --config default --data "$W/small/train" --out "$run" --no-progress \
      "${resume[@]}" "$@" ${sets:+--set $sets}
  set +f
  touch "$run/done"
}
export_run() {  # export_run RUN OUT : latent_norm averages and the length rule from the training photos
  $PY benchmarks/export_default.py "$1" --data "$W/small/train" --out "$2" --rule ssim --stall
}
export_leg() {  # export_leg RUN : RUN/export (the leg's --init) and RUN/export.json, unless done
  [ -f "$1/export/config.json" ] || export_run "$1" "$1/export" > "$1/export.json"
}
stage base "$W/base" "${BASE_SET:-}"
stage distill "$W/distill" "${DISTILL_SET:-}" --base "$W/base"
stage finetune "$W/finetune" "${FINETUNE_SET:-}" --init "$W/distill"
# a second, short cosine at low lr from stage 2's export (its latent_norm averages recomputed):
# stage 2's wall-clock budget fits its schedule as it goes, and without this leg held-out L1
# rose after 96 tokens (log sections 20 and 21)
export_leg "$W/finetune"
stage finetune "$W/leg" "max_time=null max_steps=200 lr=6e-5 base_lr=4.5e-5 min_lr=1e-5 warmup=20 ${FINETUNE_SET:-}" \
    --init "$W/finetune/export"
say "export: the length rule from the training photos -> $EXPORT"
export_run "$W/leg" "$EXPORT" | tee "$W/export.json"
$PY -m alit demo --checkpoint "$EXPORT" --out "$W/demo"
say "finished: $W/demo/index.html"
