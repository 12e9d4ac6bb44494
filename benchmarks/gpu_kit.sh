#!/usr/bin/env bash
# The GPU measurement of benchmarks/sam_gpu.py in two steps, so that a session with a GPU spends
# its device time measuring and nothing else:
#
#   bash benchmarks/gpu_kit.sh prepare   # here: wheels and 20 VOC images into .gpu-kit/ (ignored)
#   bash benchmarks/gpu_kit.sh run       # on the GPU machine, from the repository root
#
# Options after `run` go to sam_gpu.py after the kit's own (--image-dir, --images 20, --json,
# --markdown), e.g. `run --budget 15`.
#
# With the `device` tool: run(command="bash benchmarks/gpu_kit.sh run", carry=[".gpu-kit"],
# timeout_s=540); the table comes back in $OUT (sam_gpu.md, sam_gpu.json, sam_gpu.log).
#
# The GPU machine has Python 3.12 with torch, torchvision, numpy, Pillow, OpenCV, tqdm,
# portalocker, typer, pluggy, rich, networkx, scipy and matplotlib, and no network. It lacks
# segment-anything, sam2 and sam2's needs (hydra-core, omegaconf, antlr4-python3-runtime,
# iopath) and pycocotools: `prepare` builds or downloads each at the version installed in
# .venv (sam2 without its CUDA extension, as the README installs it; the pure-Python ones as
# wheels built here, pycocotools as PyPI's CPython 3.12 wheel). The images are the first 20
# JPEGs of ../shared/data/voc2012-sample (synthetic ones where it is absent); .gpu-kit/ is
# never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-kit
IMAGES=20
PURE=(segment-anything sam2 hydra-core omegaconf antlr4-python3-runtime iopath)

version() { .venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

prepare() {
  rm -rf "$KIT"
  mkdir -p "$KIT/wheels" "$KIT/images"
  local pins=() name
  for name in "${PURE[@]}"; do pins+=("$name==$(version "$name")"); done
  SAM2_BUILD_CUDA=0 .venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$KIT/wheels" "${pins[@]}"
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$KIT/wheels" "pycocotools==$(version pycocotools)"
  local voc=../shared/data/voc2012-sample/JPEGImages
  if [ -d "$voc" ]; then
    find "$voc" -maxdepth 1 -name '*.jpg' | sort | head -n "$IMAGES" | xargs -I{} cp {} "$KIT/images/"
  fi
  # Every wheel must be one a CPython 3.12 pip installs without the network.
  local check
  check=$(mktemp -d)
  .venv/bin/python -m pip install -q --no-index --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --target "$check" "$KIT"/wheels/*.whl
  rm -rf "$check"
  echo "$KIT: $(ls "$KIT/wheels" | wc -l) wheels, $(ls "$KIT/images" | wc -l) images, $(du -sh "$KIT" | cut -f1)"
}

run() {
  [ -d "$KIT/wheels" ] || { echo "error: $KIT/wheels not found: run 'bash benchmarks/gpu_kit.sh prepare' first" >&2; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$KIT"/wheels/*.whl
  export PYTHONPATH=".:/tmp/site"
  local out=${OUT:-.} images=()
  [ -n "$(ls "$KIT/images" 2>/dev/null)" ] && images=(--image-dir "$KIT/images")
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
  timeout "${SAM_GPU_SECONDS:-480}" python3 benchmarks/sam_gpu.py "${images[@]}" --images "$IMAGES" \
    --json "$out/sam_gpu.json" --markdown "$out/sam_gpu.md" "$@" 2>&1 | tee "$out/sam_gpu.log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: bash benchmarks/gpu_kit.sh prepare|run" >&2; exit 2 ;;
esac
