#!/usr/bin/env bash
# The GPU checks in one call, for a bare Linux machine that has PyTorch, torchvision and a GPU but no network:
# install the carried wheels, then run the unit tests, every notebook at full scale against its committed outputs
# (pytest --nbval), every notebook once more to keep the executed copies, and the benchmarks. A failing step does
# not stop the others; the exit status is 1 if any failed. Everything lands in one output folder:
#   OUT/gpu_checks.log       the whole console output, with a summary of the steps at the end
#   OUT/executed/*.ipynb     the notebooks as executed there (copy one over notebooks/ to refresh its outputs)
#   OUT/executed.tar.gz      the same notebooks in one file
#
# Usage, from anywhere:
#   tools/gpu_checks.sh OUT [--wheels DIR] [--steps unit,nbval,execute,bench]
#     --wheels DIR   first install every wheel in DIR (pip --no-index --no-deps) into a temporary folder put on
#                    PYTHONPATH, so that the machine's own packages stay as they are;
#                    without it the Python used must already have the test packages (e.g. .venv/bin/python)
#     --steps LIST   the steps to run, comma-separated (default: all four)
#   tools/gpu_checks.sh --download DIR [PYTHON_VERSION]
#     on a machine with network: download into DIR the wheels such a machine lacks (for Python 3.12 by default):
#     nbval, ipykernel, ipywidgets and their dependencies, and the reference d2l without its own (it imports scipy
#     and pandas, which GPU machines usually have: add them from requirements-bench.txt where they are missing)
# Environment:
#   PYTHON        the interpreter (default python3); D2L_SCALE (default full); D2L_DATA_DIR, the folder with the
#                 four Fashion-MNIST .gz files; NB, the notebooks, relative to the repository
#                 (default notebooks/*.ipynb book/*.ipynb);
#                 BENCH_ARGS, passed to benchmarks/run.py (e.g. "--cases lenet resnet18-96 --repeats 1")
# A dry run on a CPU:
#   CUDA_VISIBLE_DEVICES= D2L_SCALE=quick NB=notebooks/00_autograd.ipynb PYTHON=.venv/bin/python \
#     tools/gpu_checks.sh /tmp/gpu-checks --steps nbval,execute
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--download" ]; then
  dir="${2:?usage: tools/gpu_checks.sh --download DIR [PYTHON_VERSION]}"
  version="${3:-3.12}"
  platform=(--only-binary=:all: --python-version "$version" --implementation cp --platform manylinux_2_28_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
  pins=$(grep -E '^(nbval|nbclient|nbformat|ipykernel|ipywidgets|pytest)==' "$ROOT/requirements.txt")
  reference=$(grep -E '^d2l==' "$ROOT/requirements-bench.txt")
  # shellcheck disable=SC2086 # one argument per pin
  "$PYTHON" -m pip download --quiet -d "$dir" "${platform[@]}" $pins &&
    "$PYTHON" -m pip download --quiet -d "$dir" "${platform[@]}" --no-deps "$reference" &&
    echo "$(find "$dir" -name '*.whl' | wc -l) wheels in $dir"
  exit
fi

OUT="${1:?usage: tools/gpu_checks.sh OUT [--wheels DIR] [--steps unit,nbval,execute,bench]}"
shift
WHEELS="" STEPS="unit,nbval,execute,bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="$(cd "$2" && pwd)"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
exec > >(tee "$OUT/gpu_checks.log") 2>&1
cd "$ROOT" || exit 2
export D2L_SCALE="${D2L_SCALE:-full}" D2L_PROGRESS=0 PYTHONUNBUFFERED=1
read -r -a NOTEBOOKS <<< "${NB:-$(echo notebooks/*.ipynb book/*.ipynb)}"
NBVAL=(--nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg)
failed=()

run_step() {  # run_step NAME COMMAND...: run a step unless excluded by --steps, and record whether it failed
  local name="$1" start=$SECONDS status
  shift
  [[ ",$STEPS," == *",$name,"* ]] || return 0
  echo "== $name: $*"
  "$@"
  status=$?
  echo "== $name: $([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)") in $((SECONDS - start)) s"
  [ $status -eq 0 ] || failed+=("$name")
}

execute_copies() {  # execute copies of the notebooks in OUT/executed, each on its own, and pack them
  local status=0 path
  rm -rf "$OUT/executed" && mkdir -p "$OUT/executed"
  cp "${NOTEBOOKS[@]}" "$OUT/executed/"
  for path in "${NOTEBOOKS[@]}"; do
    "$PYTHON" tools/execute_notebooks.py "$OUT/executed/$(basename "$path")" || status=1
  done
  tar czf "$OUT/executed.tar.gz" -C "$OUT" executed
  return $status
}

echo "== gpu_checks $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$WHEELS" ]; then
  site="$(mktemp -d)" && trap 'rm -rf "$site"' EXIT
  echo "== installing the wheels in $WHEELS into $site"
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl || exit 2
  export PYTHONPATH="$site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
command -v nvidia-smi >/dev/null && nvidia-smi
"$PYTHON" - <<'EOF' || exit 2
import os, sys, torch, d2l_support
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, device {d2l_support.get_device()}"
      f"{' (' + torch.cuda.get_device_name() + ')' if torch.cuda.is_available() else ''}, "
      f"D2L_SCALE={os.environ['D2L_SCALE']}, D2L_DATA_DIR={os.environ.get('D2L_DATA_DIR', '(unset)')}")
EOF
echo "== notebooks: ${NOTEBOOKS[*]}"

run_step unit "$PYTHON" -m pytest tests --ignore=tests/test_site.py --durations=10
run_step nbval "$PYTHON" -m pytest "${NBVAL[@]}" "${NOTEBOOKS[@]}"
run_step execute execute_copies
# shellcheck disable=SC2086 # BENCH_ARGS holds several arguments
run_step bench "$PYTHON" benchmarks/run.py ${BENCH_ARGS:-}

echo "== summary: steps ${STEPS}; $([ ${#failed[@]} -eq 0 ] && echo "all passed" || echo "FAILED: ${failed[*]}")"
echo "== output in $OUT"
[ ${#failed[@]} -eq 0 ]
