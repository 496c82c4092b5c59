#!/usr/bin/env bash
# Trains candidate default models on one GPU, side by side: each variant runs `alit train distill`
# then `alit train finetune`, under wall-clock budgets (max_time), from a base in BASE_RUN.
# History: the bundled model before issue #12's rework (a VQGAN base) was made with this script on a
# lent H200 (variant wide-mid). Today's bundled model (a 16-channel KL-VAE base, latent_norm, 16 tokens
# an iteration: the `*-default` recipes) was trained on a CPU by benchmarks/train_default_cpu.sh; the
# variants below start from those recipes and override only batch, lr, widths and crops. They were
# not rerun on a GPU since that change (no GPU was lent).
#
#   benchmarks/train_default_gpu.sh PHOTOS_TRAIN BASE_RUN OUT_DIR [VARIANT ...]
#
# Environment: DISTILL_TIME / FINETUNE_TIME (seconds, default 320 / 160), PYTHON (default python3).
# BASE_TIME (seconds, default 0): first train a new base into BASE_RUN for that long (the
# `base-default` recipe, a KL-VAE, at batch 128 with wider crops), then distill from it.
# Each variant leaves OUT_DIR/<variant>/{distill,finetune}/ (run folders) and OUT_DIR/<variant>.log.
# Variants: tiny, tiny-hilr, wide, wide-lolr, wide-mid, wide-big (batch 1024: on an H200 a step cost
# about the same at any batch up to 256, so a bigger batch is nearly free).
set -u
DATA=$1 BASE=$2 OUT=$3
shift 3
VARIANTS=${*:-tiny wide tiny-hilr wide-lolr}
DT=${DISTILL_TIME:-320} FT=${FINETUNE_TIME:-160} PY=${PYTHON:-python3}
WIDE='model_overrides={encoder_width: 192, decoder_width: 192, encoder_depth: 3, decoder_depth: 3, encoder_heads: 6, decoder_heads: 6}'
COMMON=(max_steps=1000000 "max_time=$DT" cache_images=true workers=3 image_every=500 checkpoint_every=500
        quantizer_warmup=1000 restart_dead_codes=10 warmup=200)

distill_args() {
  case $1 in
    tiny)      echo batch_size=128 lr=1.0e-3 min_lr=1.0e-4 ;;
    tiny-hilr) echo batch_size=256 lr=3.0e-3 min_lr=3.0e-4 "crop_scale=[0.35,1.0]" ;;
    wide)      echo batch_size=128 lr=1.0e-3 min_lr=1.0e-4 "crop_scale=[0.35,1.0]" ;;
    wide-lolr) echo batch_size=256 lr=3.0e-4 min_lr=3.0e-5 ;;
    wide-mid)  echo batch_size=256 lr=6.0e-4 min_lr=6.0e-5 ;;
    wide-big)  echo batch_size=1024 lr=1.0e-3 min_lr=1.0e-4 workers=6 ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}

one() {
  local v=$1 extra=()
  [[ $v == wide* ]] && extra=("$WIDE")
  # shellcheck disable=SC2046
  $PY -m alit train distill --config default --data "$DATA" --base "$BASE" --out "$OUT/$v/distill" --no-progress \
      --set "${COMMON[@]}" $(distill_args "$v") "${extra[@]}" >"$OUT/$v.log" 2>&1 || return
  $PY -m alit train finetune --config default --data "$DATA" --init "$OUT/$v/distill" --out "$OUT/$v/finetune" \
      --no-progress --set max_steps=1000000 "max_time=$FT" cache_images=true workers=3 batch_size=64 \
      'gan.schedule=[]' image_every=1000 checkpoint_every=1000 >>"$OUT/$v.log" 2>&1
}

mkdir -p "$OUT"
if [ "${BASE_TIME:-0}" != 0 ]; then
  $PY -m alit train base --config default --data "$DATA" --out "$BASE" --no-progress --set max_steps=1000000 \
      "max_time=$BASE_TIME" batch_size=128 lr=1.0e-3 min_lr=1.0e-4 "crop_scale=[0.35,1.0]" cache_images=true \
      workers=6 "gan.schedule=[]" >"$OUT/base.log" 2>&1 || { tail -n 5 "$OUT/base.log"; exit 1; }
fi
for v in $VARIANTS; do one "$v" & done
wait
for v in $VARIANTS; do echo "== $v"; grep -E "starting|fit in|done:|Error|error" "$OUT/$v.log" | cut -c1-220; done
