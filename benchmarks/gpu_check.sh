#!/usr/bin/env bash
# First checks on a GPU machine, under 5 minutes on one GPU (about 2-3 minutes expected):
#
#   1. nvidia-smi, and the torch / CUDA / cuDNN versions torch sees (stops here without CUDA);
#   2. pytest -q -m cuda tests/            (the tests marked `cuda`; they skip without CUDA);
#   3. one paper-preset round at reduced epochs (inas run --preset paper --epochs 2 ...): CIFAR-10
#      from the JPEG copy when one is found (see below), else the bundled synthetic set;
#   4. benchmarks/trainer_throughput.py --device cuda: the Trainer against a bare loop in the same
#      numeric mode (autocast, channels_last), side by side on the GPU;
#   5. benchmarks/baal_dropin.py --smoke --device cuda (CIFAR-10 when found, else a generated
#      10-class image folder of random 32x32 images).
#
# Each step prints a header, its command, its exit status and its wall time; a failing step does not
# stop the others, and the script exits 1 if any failed. With $OUT set the whole log also goes to
# $OUT/gpu_check.log (and the paper round's results.json to $OUT/gpu_round_results.json).
#
#   bash benchmarks/gpu_check.sh
#
# Inputs (all optional):
#   PYTHON        the interpreter (default: python3, else python)
#   CIFAR10_DIR   an unpacked copy with train/<class>/ and test/<class>/ (default: ~/data/cifar10)
#   CIFAR10_TGZ   cifar10-jpeg.tar.gz to unpack into a temporary folder; also looked for at
#                 data/, shared/data/ and ../shared/data/ (../shared does not travel to a device
#                 machine: copy the tarball into the ignored data/ folder and carry it)
#   .whl/         wheels to install first when baal is missing there (baal 2.1.0 and structlog are not
#                 in the GPU machine's image; see /work/.library/device/README.md for downloading them)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

FAILED=()
# step NAME TIMEOUT_S COMMAND...: run it under a time limit, report status and wall time, go on.
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name ==="
    echo "+ $*"
    local began rc=0
    began=$(now)
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    if [[ $rc -eq 0 ]]; then
        echo "=== $name: ok, $(since "$began") s ==="
    else
        local why="exit status $rc"
        [[ $rc -eq 124 ]] && why="timed out after $limit s"
        echo "=== $name: FAILED ($why), $(since "$began") s ==="
        FAILED+=("$name")
    fi
}

TOTAL_BEGAN=$(now)
echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), repo $REPO, python $PY, scratch $WORK"

# -- Python environment: wheels carried in .whl/, and the inas_cli package (it lives in cli/) ---------
if ! "$PY" -c "import baal, structlog" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        echo "baal is missing: installing the wheels in .whl/ into $WORK/site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$PY" -c "import baal, structlog" 2>/dev/null || echo "WARNING: baal (or structlog) cannot be imported; the steps " \
        "that need it will fail. Carry wheels in .whl/ (baal==2.1.0 structlog; --no-deps; see the device README)."
fi
if ! "$PY" -c "import inas_plugins, inas_cli" 2>/dev/null; then
    mkdir -p "$WORK/shim"
    ln -s "$REPO/cli" "$WORK/shim/inas_cli"
    export PYTHONPATH="$REPO:$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"
    echo "inas_plugins / inas_cli not installed: using the working tree through PYTHONPATH"
fi

# -- 1. the machine ----------------------------------------------------------------------------------------
step "nvidia-smi" 30 nvidia-smi
step "torch and CUDA versions" 60 "$PY" -c '
import sys, torch, torchvision
print("python", sys.version.split()[0], "| torch", torch.__version__, "| torchvision", torchvision.__version__)
print("CUDA (torch built with)", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version(),
      "| cuda available", torch.cuda.is_available())
for name in ("baal", "timm"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "(no __version__)"))
    except ImportError as error:
        print(name, "MISSING:", error)
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
'
if [[ " ${FAILED[*]} " == *" torch and CUDA versions "* ]]; then
    echo "no usable CUDA device: stopping here"
    exit 1
fi

# -- the data ------------------------------------------------------------------------------------------------
CIFAR=""
for dir in "${CIFAR10_DIR:-}" "$HOME/data/cifar10"; do
    if [[ -n "$dir" && -d "$dir/train" && -d "$dir/test" ]]; then CIFAR="$dir"; break; fi
done
if [[ -z "$CIFAR" ]]; then
    for tgz in "${CIFAR10_TGZ:-}" data/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz ../shared/data/cifar10-jpeg.tar.gz; do
        if [[ -n "$tgz" && -f "$tgz" ]]; then
            echo "unpacking $tgz into $WORK"
            tar xzf "$tgz" -C "$WORK"
            CIFAR="$WORK/cifar10"
            break
        fi
    done
fi
echo "CIFAR-10 JPEG copy: ${CIFAR:-none found (synthetic data instead)}"

# -- 2. tests marked cuda ---------------------------------------------------------------------------------------
# pytest exits 5 when nothing is collected: no test is marked cuda yet, which is not a failure here.
step "pytest -m cuda" 120 bash -c '"$0" -m pytest -q -p no:cacheprovider -m cuda tests/; rc=$?;
    if [[ $rc -eq 5 ]]; then echo "(no tests marked cuda were collected)"; exit 0; fi; exit $rc' "$PY"

# -- 3. one paper-preset round, reduced epochs ------------------------------------------------------------------------
ROUND=(--preset paper --epochs 2 --epoch-size 4000 --heuristic mc_dropout --device cuda --quiet --out "$WORK/gpu-round")
if [[ -n "$CIFAR" ]]; then
    # the paper's first round (2,000 labels, base width 64, 100 MC samples), one query, then a second training
    ROUND+=(--dataset folder --data-dir "$CIFAR" --initial 2000 --query-size 2000 --budget 4000
            --limit-train 10000 --limit-test 2000)
else
    # synthetic holds 512 training images: the paper's recipe on fewer labels
    ROUND+=(--dataset synthetic --initial 256 --query-size 128 --budget 384)
fi
step "inas run --preset paper (reduced)" 150 "$PY" -m inas_cli.main run "${ROUND[@]}"
if [[ -n "${OUT:-}" && -f "$WORK/gpu-round/results.json" ]]; then
    cp "$WORK/gpu-round/results.json" "$OUT/gpu_round_results.json"
fi

# -- 4. trainer throughput, smallest settings (CPU only: the script has no device option) ------------------------------
step "trainer_throughput.py on cuda (Trainer vs a bare loop)" 120 \
    "$PY" benchmarks/trainer_throughput.py --device cuda --reps 3 --seconds 1.0 --only-ratio

# -- 5. the baal drop-in benchmark, smoke settings, on cuda -------------------------------------------------------
DROPIN_DATA="$CIFAR"
if [[ -z "$DROPIN_DATA" ]]; then
    DROPIN_DATA="$WORK/random-folder"
    "$PY" - "$DROPIN_DATA" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root, rng = Path(sys.argv[1]), np.random.default_rng(0)
for split, per_class in (("train", 25), ("test", 10)):
    for label in range(10):
        folder = root / split / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
print(f"generated a random 10-class image folder at {root} (250 train / 100 test images)")
EOF
fi
step "baal_dropin.py --smoke --device cuda" 90 \
    "$PY" benchmarks/baal_dropin.py --smoke --device cuda --data-dir "$DROPIN_DATA"

echo
echo "gpu_check: $(since "$TOTAL_BEGAN") s in all; failed: ${FAILED[*]:-none}"
[[ ${#FAILED[@]} -eq 0 ]]
