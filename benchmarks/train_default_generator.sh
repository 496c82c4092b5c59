#!/usr/bin/env bash
# The bundled default generator, from the photos to its figures, in one command on a CPU:
#
#   benchmarks/train_default_generator.sh [WORK_DIR]        # default WORK_DIR: runs/generator-default
#
# About 40 minutes on a loaded 2-core CPU (measured: 15 + 21 + 2):
# 1. `alit data photos` (273 training photos), unless PHOTOS (default WORK_DIR/photos) has them
# 2. `alit tokenize --views 4`: the bundled tokenizer's tokens of 4 seeded random views of each
#    training photo (1092 sequences, 15 min), and of the 48 demo photos (held out: neither the
#    tokenizer nor the generator trained on them; 6 s)
# 3. `alit train generator --config default`: 600 steps (21 min; at most 30, the recipe's max_time)
# 4. `alit eval generator`: held-out bits per token, 256 samples under auto, memorisation, FD (null
#    offline without the Inception weights), samples at every length: WORK_DIR/eval/index.html (2 min)
# 5. the generator (EMA weights) written to EXPORT (default WORK_DIR/generator; the bundled one is
#    EXPORT=src/alit/assets/generator-default)
#
# A step that is done is skipped; a killed training run is resumed. Environment: PYTHON (default
# python3), PHOTOS, EXPORT, VIEWS (default 4), TRAIN_SET (key=value overrides, e.g. "max_time=60").
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/generator-default}
PY=${PYTHON:-python3}
PHOTOS=${PHOTOS:-$W/photos}
EXPORT=${EXPORT:-$W/generator}
VIEWS=${VIEWS:-4}
mkdir -p "$W"
start=$(date +%s)
say() { echo "[$(date +%H:%M:%S), $(( ($(date +%s) - start) / 60 )) min] $*"; }

[ -d "$PHOTOS/train" ] || $PY -m alit data photos --out "$PHOTOS"
say "tokens of $(find "$PHOTOS/train" -type f | wc -l) training photos x $VIEWS views"
$PY -m alit tokenize "$PHOTOS/train" --out "$W/tokens-train" --views "$VIEWS" --checkpoint default --no-progress
$PY -m alit tokenize src/alit/assets/demo_photos --out "$W/tokens-heldout" --checkpoint default --no-progress
if [ ! -f "$W/run/done" ]; then
    resume=()
    [ -d "$W/run/checkpoints" ] && resume=(--resume)
    say "training the generator into $W/run"
    # shellcheck disable=SC2086
    $PY -m alit train generator --config default --data "$W/tokens-train" --out "$W/run" --no-progress \
        "${resume[@]}" ${TRAIN_SET:+--set $TRAIN_SET}
    touch "$W/run/done"
fi
say "evaluating"
$PY -m alit eval generator --generator "$W/run" --data "$W/tokens-heldout" --out "$W/eval" --offline
$PY - "$W/run" "$EXPORT" <<'PYEOF'
import sys
import alit
gen = alit.load_generator(sys.argv[1])
gen.save(sys.argv[2], source="benchmarks/train_default_generator.sh (recipe generator-default, EMA weights)")
print(f"generator written to {sys.argv[2]}")
PYEOF
say "done"
