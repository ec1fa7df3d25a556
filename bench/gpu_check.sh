#!/usr/bin/env bash
# The GPU check in one command that stops itself within its budget (7.5 minutes).
#
#   bench/gpu_check.sh                  on a CUDA machine: every stage at full size
#   bench/gpu_check.sh --dry            on the CPU: the same stages at tiny sizes (plumbing)
#   bench/gpu_check.sh --prepare        once: fill the prepared data folder, data/device/
#
# Stages, in order (the most wanted first: late ones get what is left of the budget), each
# under its own timeout; a failing stage does not stop the others and a summary of which
# passed ends the output:
#   env                 python, torch, CUDA, cuDNN, GPU, driver; the plugins found (strictly)
#   data                CIFAR-10 in torchvision's layout, built from the prepared pack (~6 s)
#   pytest              python -m pytest -m cuda (the CUDA tests; all skipped on a CPU)
#   train               mihead run recipes/dhog_cifar10.toml, evaluated every --eval-every
#                       epochs, stopped by SIGTERM after --train-seconds (it checkpoints)
#   eval                mihead eval on that checkpoint (summary.json, plots)
#   report              bench/time_to_accuracy.py: epoch time, accuracy against time
#   frozen              heads on frozen features: bench/encoders.py (ViT-B/16 embeddings/s), then
#                       mihead run recipes/temi_cifar10.toml with random ViT-B/16 weights saved
#                       here: CIFAR-10's 60,000 images encoded (images/s on the bar) and cached,
#                       neighbours mined, a few head epochs (no download; the scores mean nothing)
#   train_step          bench/train_step.py --augment: baseline vs mihead, largest batch
#   train_step_compile  the same with --compile (no largest-batch search: each size recompiles)
# Everything printed goes to $OUT/gpu_check.log when OUT is set (else build/gpu_check/out/),
# with the run directory's small files (run_files.tar.gz, metrics.jsonl, summary.json,
# training.png) and pytest's JUnit XML. docs/benchmarks.md says how to run it on a GPU machine.
#
# Options:
#   --dry                tiny sizes on the CPU; albumentations and lightly hidden, as on the H200
#   --budget SECONDS     the whole script's deadline (default 450): late stages get what is left
#   --train-seconds N    the training stage's budget (default 180; --dry 20)
#   --eval-every N       epochs between evaluations while training (default 2; --dry 1)
#   --pack DIR           the CIFAR-10 pack (default data/device/cifar10, else ../shared/data/cifar10)
#   --data DIR           where CIFAR-10 is (or is built): DIR/cifar-10-batches-py (default data/cifar10-shared)
#   --only LIST          run only these stages (comma-separated names above)
#   --work DIR           scratch folder: entry-point metadata, run directory (default build/gpu_check)
#   --prepare            copy the pack and the tomli_w wheel into data/device/ (git-ignored; copy
#                        it with the checkout to the GPU machine) and check the 64 MiB limit
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

PYTHON=${PYTHON:-python3}
WORK=build/gpu_check
PREPARED=data/device
DRY=0
PREPARE=0
BUDGET=450
TRAIN_SECONDS=""
EVAL_EVERY=""
PACK=""
DATA=data/cifar10-shared
ONLY=""
LIMIT_MIB=64
SHARED_PACK=../shared/data/cifar10
STAGES=(env data pytest train eval report frozen train_step train_step_compile)

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --dry) DRY=1 ;;
        --prepare) PREPARE=1 ;;
        --budget) BUDGET=$2; shift ;;
        --train-seconds) TRAIN_SECONDS=$2; shift ;;
        --eval-every) EVAL_EVERY=$2; shift ;;
        --pack) PACK=$2; shift ;;
        --data) DATA=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --work) WORK=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for name in ${ONLY//,/ }; do
    [[ " ${STAGES[*]} " == *" $name "* ]] || { echo "gpu_check.sh: --only: unknown stage $name; stages: ${STAGES[*]}" >&2; exit 2; }
done

# --- --prepare: what the GPU machine needs besides the checkout, in the git-ignored data/device/
tree_size() {  # bytes of the tracked and untracked-not-ignored files, and of data/device
    "$PYTHON" - "$PREPARED" <<'EOF'
import os, subprocess, sys
names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True, check=True).stdout.split(b"\0")
tree = sum(os.path.getsize(n) for n in names if n and os.path.isfile(n))
prepared = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
print(tree, prepared)
EOF
}

if [ "$PREPARE" = 1 ]; then
    source_pack=${PACK:-$SHARED_PACK}
    [ -f "$source_pack/build.py" ] || { echo "gpu_check.sh: no CIFAR-10 pack at $source_pack" >&2; exit 2; }
    git check-ignore -q "$PREPARED" || { echo "gpu_check.sh: $PREPARED is not git-ignored; it must not be committed" >&2; exit 2; }
    rm -rf "$PREPARED" && mkdir -p "$PREPARED/cifar10" "$PREPARED/wheels" || exit 2
    cp "$source_pack"/build.py "$source_pack"/index.json "$source_pack"/batches.meta "$source_pack"/cifar10_jpeg_q75.npz "$PREPARED/cifar10/" || exit 2
    chmod -R u+w "$PREPARED"
    # tomli_w (mihead writes recipe.toml with it) is the one dependency the H200 machine lacked
    # (docs/benchmarks.md); its pure-Python wheel is imported from the zip there.
    version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('tomli_w'))") || exit 2
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$PREPARED/wheels" "tomli_w==$version" || exit 2
    read -r tree prepared < <(tree_size) || exit 2
    total=$((tree + prepared))
    awk -v t="$tree" -v c="$prepared" -v d="$PREPARED" -v l="$LIMIT_MIB" \
        'BEGIN { m = 1048576; printf "working tree %.2f MiB + %s %.2f MiB = %.2f MiB (limit %d MiB)\n", t / m, d, c / m, (t + c) / m, l }'
    [ "$total" -lt $((LIMIT_MIB * 1048576)) ] || { echo "gpu_check.sh: over the $LIMIT_MIB MiB limit of the copy to the GPU machine" >&2; exit 1; }
    ls -l "$PREPARED"/cifar10 "$PREPARED"/wheels
    exit 0
fi

# --- the environment every stage runs in ------------------------------------------------------
if [ "$DRY" = 1 ]; then
    TRAIN_SECONDS=${TRAIN_SECONDS:-20}
    EVAL_EVERY=${EVAL_EVERY:-1}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
    TRAIN_SECONDS=${TRAIN_SECONDS:-180}
    EVAL_EVERY=${EVAL_EVERY:-2}
fi
if [ -z "$PACK" ]; then
    PACK=$PREPARED/cifar10
    [ -f "$PACK/build.py" ] || PACK=$SHARED_PACK
fi
mkdir -p "$WORK" || exit 2
WORK=$(cd "$WORK" && pwd)
LOGDIR=${OUT:-$WORK/out}
RUN=$WORK/run
mkdir -p "$LOGDIR" || exit 2

# Plugins are found through entry points, which need the distribution's metadata: written
# from pyproject.toml into $WORK/site, ahead of any installed copy (bench/entry_points.py).
PYPATH=$WORK/site:$ROOT:$ROOT/plugins
for wheel in "$PREPARED"/wheels/*.whl; do
    [ -f "$wheel" ] && PYPATH=$PYPATH:$ROOT/$wheel  # pure-Python wheels import from the zip
done
if [ "$DRY" = 1 ]; then  # as on the H200 machine: albumentations and lightly absent
    for missing in albumentations lightly; do
        mkdir -p "$WORK/absent/$missing"
        echo "raise ModuleNotFoundError(\"No module named '$missing' (hidden by bench/gpu_check.sh --dry)\")" > "$WORK/absent/$missing/__init__.py"
    done
    PYPATH=$WORK/absent:$PYPATH
fi
export PYTHONPATH=$PYPATH PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 MIHEAD_STRICT_PLUGINS=0 COLUMNS=${COLUMNS:-100}
# compilation caches of our own: a rerun on a warm machine reuses them, and one that a timeout
# may have left half-written (a truncated .so fails every later compilation) is removed
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor TRITON_CACHE_DIR=$WORK/triton

START=$SECONDS
DEADLINE=$((START + BUDGET))
RESULTS=()
FAILED=0
EVAL_CAP=60
REPORT_CAP=20
GRACE=30  # seconds a SIGTERM'd run has to write its checkpoint

selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
left() { echo $((DEADLINE - SECONDS)); }
limit() {  # cap, or what is left of the budget, at least 1 (timeout 0 would mean no limit)
    local cap=$1 rest
    rest=$(left)
    rest=$((cap < rest ? cap : rest))
    echo $((rest < 1 ? 1 : rest))
}

run_stage() {  # run_stage NAME: runs stage_NAME, records passed/failed and its seconds
    local name=$1 start=$SECONDS rc status
    if ! selected "$name"; then
        RESULTS+=("$(printf '%-20s %s' "$name" "not selected (--only)")")
        return
    fi
    echo
    echo "=== $name ($(left) s of the budget left) ==="
    if [ "$(left)" -le 0 ]; then
        RESULTS+=("$(printf '%-20s %s' "$name" "FAILED: the budget was spent before it started")")
        FAILED=1
        return
    fi
    "stage_$name"
    rc=$?
    case $rc in
        0) status=passed ;;
        124 | 137) status="FAILED: timed out (exit $rc)" ;;
        *) status="FAILED: exit $rc" ;;
    esac
    [ $rc = 0 ] || FAILED=1
    if [ $rc = 124 ] || [ $rc = 137 ]; then rm -rf "$TORCHINDUCTOR_CACHE_DIR" "$TRITON_CACHE_DIR"; fi
    RESULTS+=("$(printf '%-20s %-30s %5d s' "$name" "$status" $((SECONDS - start)))")
}

say() { echo "\$ $*"; "$@"; }

stage_env() {
    say uname -a
    echo "cores: $(nproc)"
    if command -v nvidia-smi > /dev/null; then
        say timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    timeout 60 "$PYTHON" - "$DRY" <<'EOF' || return $?
import importlib, importlib.metadata as m, platform, sys
import torch
print(f"python {platform.python_version()} ({sys.executable})")
print(f"torch {torch.__version__} | CUDA {torch.version.cuda} | cuDNN {torch.backends.cudnn.version()} | cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name} | {p.total_memory / 2**30:.1f} GiB | compute capability {p.major}.{p.minor} | {p.multi_processor_count} SMs | {torch.cuda.device_count()} device(s)")
for name in ("torchvision", "timm", "numpy", "scipy", "sklearn", "matplotlib", "rich", "pluggy", "PIL", "cv2", "tomli_w", "pytest", "hypothesis", "albumentations", "lightly"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')} ({getattr(module, '__file__', '?')})")
    except ImportError as exc:
        print(f"  {name}: absent ({exc})")
print(f"mihead metadata (entry points) from: {m.distribution('mihead').locate_file('')}")
if not torch.cuda.is_available() and sys.argv[1] != "1":
    sys.exit("no CUDA device: this check needs one (use --dry on a CPU)")
EOF
    MIHEAD_STRICT_PLUGINS=1 say timeout 60 "$PYTHON" -m mihead plugins
}

stage_data() {
    if [ -f "$DATA/cifar-10-batches-py/test_batch" ]; then
        echo "CIFAR-10 already in $DATA/cifar-10-batches-py"
        return 0
    fi
    if [ ! -f "$PACK/build.py" ]; then
        echo "no CIFAR-10 pack at $PACK: run bench/gpu_check.sh --prepare beside the pack and copy $PREPARED with the checkout"
        return 1
    fi
    rm -rf "$DATA.tmp"
    say timeout "$(limit 60)" "$PYTHON" "$PACK/build.py" "$DATA.tmp" || return $?
    rm -rf "$DATA" && mv "$DATA.tmp" "$DATA"
}

stage_pytest() {
    say timeout -k 10 "$(limit 120)" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider --durations=10 --junitxml="$LOGDIR/pytest-cuda.xml" tests
}

if [ "$DRY" = 1 ]; then
    STEP_SIZE=(--device cpu --batch 4 --width 0.0625 --size 16 --steps 1 --warmup 1 --threads 1)
else
    STEP_SIZE=()  # CUDA: the recipe's full size (batch 220, width 1, 32 px)
fi

stage_train_step() {
    say timeout -k 10 "$(limit 90)" "$PYTHON" bench/train_step.py --augment "${STEP_SIZE[@]}"
}

stage_train_step_compile() {  # a cold compilation on 2 CPU cores takes minutes even at --dry sizes
    say timeout -k 10 "$(limit "$([ "$DRY" = 1 ] && echo 300 || echo 100)")" "$PYTHON" bench/train_step.py --augment --compile --max-batch 0 "${STEP_SIZE[@]}"
}

stage_train() {
    local seconds rc lines sets
    seconds=$(($(left) - EVAL_CAP - REPORT_CAP - GRACE))
    seconds=$((seconds < TRAIN_SECONDS ? seconds : TRAIN_SECONDS))
    if [ "$seconds" -lt 10 ]; then
        echo "only $seconds s of the budget left for training"
        return 1
    fi
    sets=(data.root="$DATA" data.verify=false eval.every="$EVAL_EVERY" train.checkpoint_every=1000000)
    if [ "$DRY" = 1 ]; then
        sets+=(train.device=cpu augment.where=device data.limit=256 train.batch_size=16 backbone.width=0.0625 eval.batch_size=256)
    fi
    rm -rf "$RUN"
    echo "training for $seconds s, then SIGTERM (a checkpoint, exit 130)"
    say timeout -s TERM -k "$GRACE" --preserve-status "$seconds" "$PYTHON" -m mihead run recipes/dhog_cifar10.toml --out "$RUN" "${sets[@]/#/--set=}"
    rc=$?
    lines=$(cat "$RUN/metrics.jsonl" 2> /dev/null | wc -l)
    echo "exit $rc (130: stopped by the SIGTERM after its checkpoint; 0: finished); $lines epochs logged"
    if [ $rc != 0 ] && [ $rc != 130 ]; then return $rc; fi
    [ -f "$RUN/checkpoint.pt" ] || { echo "no checkpoint written"; return 1; }
    [ "$lines" -gt 0 ] || { echo "no epoch finished within $seconds s"; return 1; }
}

stage_eval() {
    [ -f "$RUN/checkpoint.pt" ] || { echo "no checkpoint in $RUN (the train stage did not write one)"; return 1; }
    say timeout -k 10 "$(limit "$EVAL_CAP")" "$PYTHON" -m mihead eval "$RUN"
}

stage_report() {
    local targets=(0.2 0.3 0.4 0.5 0.6)
    [ "$DRY" = 1 ] && targets=(0.15 0.2)
    say timeout "$(limit "$REPORT_CAP")" "$PYTHON" bench/time_to_accuracy.py "$RUN" --targets "${targets[@]}"
}

stage_frozen() {
    local model=vit_base_patch16_224 weights=$WORK/frozen_weights.safetensors sets
    local encode=(--device cuda --models "$model" --batch 256 --batches 5)
    sets=(data.root="$DATA" data.verify=false backbone.weights="$weights" backbone.cache="$WORK/embeddings" train.epochs=5 eval.every=0)
    if [ "$DRY" = 1 ]; then
        model=test_vit.r160_in1k
        encode=(--device cpu --models "$model" --batch 4 --batches 1 --threads 1)
        sets+=(backbone.model="$model" data.limit=256 train.device=cpu train.batch_size=32 train.epochs=1 augment.k=5 head.hidden=16 eval.batch_size=256)
    fi
    say timeout -k 10 "$(limit 60)" "$PYTHON" bench/encoders.py "${encode[@]}" || return $?
    timeout 60 "$PYTHON" -c "import sys, timm; from safetensors.torch import save_file; save_file(timm.create_model(sys.argv[1]).state_dict(), sys.argv[2])" "$model" "$weights" || return $?
    rm -rf "$WORK/embeddings" "$WORK/frozen"
    say timeout -k 10 "$(limit 150)" "$PYTHON" -m mihead run recipes/temi_cifar10.toml --out "$WORK/frozen" "${sets[@]/#/--set=}"
}

collect() {  # the run directory's small files, beside the log
    selected train && [ -d "$RUN" ] || return 0
    tar -czf "$LOGDIR/run_files.tar.gz" --exclude='checkpoint*' -C "$RUN" . 2> /dev/null
    for name in metrics.jsonl summary.json training.png; do
        [ -f "$RUN/$name" ] && cp "$RUN/$name" "$LOGDIR/"
    done
    echo "run directory's small files: $LOGDIR/run_files.tar.gz ($(tar -tzf "$LOGDIR/run_files.tar.gz" | grep -vc '/$') files)"
}

main() {
    echo "bench/gpu_check.sh $([ "$DRY" = 1 ] && echo --dry) | budget $BUDGET s | training $TRAIN_SECONDS s | $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "PYTHONPATH=$PYTHONPATH"
    echo "writing to $LOGDIR"
    timeout 30 "$PYTHON" bench/entry_points.py "$WORK/site" || { echo "cannot write the entry-point metadata"; FAILED=1; }
    for name in "${STAGES[@]}"; do
        run_stage "$name"
    done
    collect
    echo
    echo "=== summary: $((SECONDS - START)) s of $BUDGET s ==="
    printf '%s\n' "${RESULTS[@]}"
    [ "$FAILED" = 0 ] && echo "every selected stage passed" || echo "some stages FAILED (above)"
    return "$FAILED"
}

main 2>&1 | tee "$LOGDIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
