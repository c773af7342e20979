#!/usr/bin/env bash
# One prepared GPU check for t3s, sized for one H100 (80 GB) in about 7 minutes, written to one JSON.
#
#   bash benchmarks/gpu_check.sh --prepare   # here, with a registry: wheels the GPU image lacks -> benchmarks/.gpu-wheels
#   bash benchmarks/gpu_check.sh --rehearse  # here, on the CPU: every step's code path at toy size (CI runs it)
#   bash benchmarks/gpu_check.sh             # on the GPU machine (carry benchmarks/.gpu-wheels with the tree)
#   bash benchmarks/gpu_check.sh --dry-run   # list the steps
#
# The GPU image has torch, transformers, lightning and peft but not jsonargparse, omegaconf, math-verify or
# datasets, and no registry: the first steps install the carried wheels (--no-deps --no-index) and import every
# t3s module, failing in one line that names a missing package. Optional extra wheels (flash-attn, liger-kernel,
# trl) are installed from ./wheels/*.whl when that folder exists. The rehearsal runs the same scripts with the
# same flags except device, model size and lengths (and flex attention, whose CPU compilation takes minutes:
# eager stands in). Results: $OUT/gpu_check.json when $OUT is set; else benchmarks/results/ on a GPU and a
# temporary folder for a rehearsal. Each step records rc, seconds, its JSON result and its log's tail.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
MODE="gpu"
case "${1:-}" in
  --prepare) exec $PY benchmarks/gpu_env.py prepare ;;
  --rehearse) MODE="rehearse" ;;
  --dry-run) MODE="dry" ;;
  "") ;;
  *) echo "gpu_check.sh: unknown option $1 (use --prepare, --rehearse or --dry-run)" >&2; exit 2 ;;
esac
export T3S_SHARED="${T3S_SHARED:-$(cd .. && pwd)/shared}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"

if [[ "$MODE" == "rehearse" ]]; then
  RESULTS="${OUT:-$(mktemp -d)}"
  DEV=cpu
  ATTN="--model tiny --length 256 --kernels eager"
  R1="--model tiny --data r1 --traces 2 --max-length 2048 --cycles 1"
  BIG="--model tiny --data fixed --traces 1 --max-length 128 --precision bf16-true --grad-ckpt --cycles 1"
  SCORE="--model tiny --score-only --score-length 512"
  FIT="--trainer.accelerator=cpu --trainer.devices=1 --trainer.max_steps=2 --eval.train_limit=4"
  TESTS="--collect-only $(grep -l 'mark.gpu' tests/*.py | tr '\n' ' ')"  # the GPU tests' files
  LIMIT=1   # rehearsal timeouts: 3 × the GPU's (a loaded CPU)
else
  RESULTS="${OUT:-benchmarks/results}"
  DEV=cuda
  ATTN="--model qwen3-1.7b-2layers --length 8192 --kernels flex_attention flash_attention_2"
  R1="--model qwen3-1.7b --data r1 --traces 16 --max-length 8192 --cycles 3"
  BIG="--model qwen3-8b --data fixed --traces 1 --max-length 8192 --precision bf16-true --grad-ckpt --cycles 2"
  SCORE="--model qwen3-1.7b --score-only --score-length 32768"
  FIT="--trainer.accelerator=gpu --trainer.devices=1 --trainer.max_steps=10"
  TESTS=""
  LIMIT=0
fi
WORK="$RESULTS/gpu_check_$STAMP"
BENCH="$PY benchmarks/train_throughput.py --device $DEV"

STEPS=(
  "env        | nvidia-smi (GPU) and library versions"
  "wheels     | pip install --no-deps --no-index benchmarks/.gpu-wheels/*.whl (+ ./wheels/*.whl): what the image lacks"
  "imports    | benchmarks/gpu_env.py imports: every t3s module imports, or one line naming the missing package"
  "tests      | pytest -m gpu (flex/flash packed-attention parity, fused/Liger loss parity, bf16 CUDA)"
  "attention  | benchmarks/attention_parity.py $ATTN: flex/flash on packed rows against SDPA's dense mask"
  "r1_1.7b    | train_throughput.py $R1: t3s vs a plain HF loop (and TRL), tok/s, MFU, T3S masked step"
  "8b_memory  | train_throughput.py $BIG --contenders t3s_full t3s_masked: Qwen3-8B on one GPU, peak memory"
  "fsdp2_1gpu | python -m t3s fit --config tiny $FIT on ModelParallelStrategy (FSDP2), bf16 compute, inline eval"
  "score_32k  | train_throughput.py $SCORE: no-grad chunked c_t at 32k, tok/s and peak memory (goal: < 10 GiB)"
)
if [[ "$MODE" == "dry" ]]; then
  echo "gpu_check.sh would run, writing \$OUT/gpu_check.json (or benchmarks/results/):"
  for step in "${STEPS[@]}"; do echo "  - $step"; done
  exit 0
fi
if [[ "$MODE" == "gpu" ]] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA device visible to torch; --rehearse runs the same steps on the CPU" >&2
  exit 2
fi
mkdir -p "$WORK"
status=0
declare -A RCS SECS
run() {  # run NAME TIMEOUT_S CMD...: log to $WORK/NAME.log, never abort the whole check
  local name="$1" limit="$2"; shift 2
  [[ "$LIMIT" == 1 ]] && limit=$((limit * 3))
  echo "== $name: $*"
  local start=$SECONDS rc=0
  timeout "$limit" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  RCS[$name]=$rc; SECS[$name]=$((SECONDS - start))
  if [[ $rc == 0 ]]; then echo "   ok (${SECS[$name]} s)"; else echo "   FAILED (rc $rc), see $WORK/$name.log"; status=1; fi
  tail -n 2 "$WORK/$name.log"
}

run env 30 bash -c "(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv) || echo 'no nvidia-smi'; $PY -c 'import sys, torch, transformers, lightning; print(sys.version.split()[0], torch.__version__, transformers.__version__, lightning.__version__)'"
if [[ "$MODE" == "gpu" ]]; then
  run wheels 90 bash -c "shopt -s nullglob; w=(benchmarks/.gpu-wheels/*.whl wheels/*.whl); if (( \${#w[@]} )); then $PY -m pip install --no-deps --no-index \"\${w[@]}\"; else echo 'no wheels carried'; fi"
else
  run wheels 30 bash -c "ls benchmarks/.gpu-wheels/*.whl 2>/dev/null | wc -l | xargs echo 'wheels prepared (installed on the GPU only):'"
fi
run imports 60 $PY benchmarks/gpu_env.py imports
if [[ ${RCS[imports]} != 0 ]]; then
  echo "gpu_check.sh: $(tail -n 1 "$WORK/imports.log")" >&2
fi
run tests 90 $PY -m pytest -m gpu -q -p no:cacheprovider $TESTS
run attention 30 $PY benchmarks/attention_parity.py --device $DEV $ATTN --json "$WORK/attention.json"
run r1_1.7b 100 $BENCH $R1 --json "$WORK/r1_1.7b.json"
run 8b_memory 120 $BENCH $BIG --contenders t3s_full t3s_masked --json "$WORK/8b_memory.json"
run fsdp2_1gpu 60 $PY -m t3s fit --config tiny $FIT --trainer.strategy.class_path=ModelParallelStrategy \
  --model.init_args.fsdp_param_dtype=bfloat16 --trainer.default_root_dir="$WORK/fsdp2" \
  --trainer.logger.init_args.save_dir="$WORK/fsdp2"
run score_32k 45 $BENCH $SCORE --json "$WORK/score_32k.json"

$PY - "$WORK" "$RESULTS/gpu_check.json" "$MODE" <<PY
import json, pathlib, sys
work, target, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
rcs = dict(x.split("=") for x in "$(for k in "${!RCS[@]}"; do printf '%s=%s ' "$k" "${RCS[$k]}"; done)".split())
secs = dict(x.split("=") for x in "$(for k in "${!SECS[@]}"; do printf '%s=%s ' "$k" "${SECS[$k]}"; done)".split())
out = {"mode": mode, "folder": str(work), "steps": {}}
for name in [s.split("|")[0].strip() for s in """$(printf '%s\n' "${STEPS[@]}")""".splitlines() if s.strip()]:
    log = work / f"{name}.log"
    entry = {"rc": int(rcs.get(name, -1)), "seconds": int(secs.get(name, 0)),
             "log_tail": log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []}
    result = work / f"{name}.json"
    if result.exists():
        entry["result"] = json.loads(result.read_text())
    out["steps"][name] = entry
big = out["steps"]["8b_memory"].get("result", {})
out["headline"] = {k: v for k, v in {
    "r1_ratio_full_vs_hf": out["steps"]["r1_1.7b"].get("result", {}).get("ratio_full_vs_hf"),
    "r1_mfu_t3s_full": out["steps"]["r1_1.7b"].get("result", {}).get("mfu_t3s_full"),
    "8b_peak_mib_t3s_full": big.get("peak_mib_t3s_full"),
    "score_32k_peak_mib": out["steps"]["score_32k"].get("result", {}).get("peak_mib_score"),
    "attention_parity": out["steps"]["attention"].get("result", {}).get("parity"),
}.items() if v is not None}
out["ok"] = all(s["rc"] == 0 for s in out["steps"].values())
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(json.dumps(out, indent=2) + "\n")
print(f"wrote {target} ({sum(s['rc'] == 0 for s in out['steps'].values())}/{len(out['steps'])} steps ok)")
PY
exit $status
