#!/usr/bin/env bash
# One prepared GPU check for t3s (issue 16): GPU-marked tests, the training throughput table and
# scoring memory, written to one JSON. Sized for one H200 in about 8 minutes.
#
#   bash benchmarks/gpu_check.sh            # run it (needs CUDA)
#   bash benchmarks/gpu_check.sh --dry-run  # list the steps and exit 0 (any machine)
#
# Uses only torch, transformers and lightning from the environment. Optional wheels (trl, accelerate,
# liger-kernel, flash-attn) are installed from ./wheels/*.whl when that folder exists and skipped
# cleanly otherwise. Results: $OUT/gpu_check.json when $OUT is set, else benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
RESULTS="${OUT:-benchmarks/results}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK="$RESULTS/gpu_check_$STAMP"
export T3S_SHARED="${T3S_SHARED:-$(cd .. && pwd)/shared}"

STEPS=(
  "env        | nvidia-smi and library versions"
  "wheels     | pip install --no-deps ./wheels/*.whl if present (trl, accelerate, liger-kernel, flash-attn); else skipped"
  "tests      | $PY -m pytest -m gpu -q (packed attention flex/flash parity, fused/Liger loss parity, bf16 CUDA)"
  "r1_1.7b    | train_throughput.py --device cuda --model qwen3-1.7b --data r1 --traces 16 --max-length 8192 --cycles 3"
  "fixed_1.7b | train_throughput.py --device cuda --model qwen3-1.7b --data fixed --traces 4 --max-length 8192 --cycles 3"
  "8b_t3s     | train_throughput.py --device cuda --model qwen3-8b --data fixed --traces 2 --max-length 8192 --precision bf16-true --grad-ckpt --contenders t3s_full t3s_masked --cycles 2"
  "8b_hf      | the same with --contenders hf_plain (one 8B model with Adam at a time fits)"
  "fsdp2_1gpu | python -m t3s fit --config configs/tiny.yaml on ModelParallelStrategy (FSDP2), 1 GPU, bf16 compute, 10 steps, inline evaluation on gathered weights"
  "score_32k  | train_throughput.py --device cuda --model qwen3-1.7b --score-only --score-length 32768 (no-grad, bf16, chunked c_t: tok/s and peak memory)"
  "combine    | merge every step's JSON into $RESULTS/gpu_check.json"
)

if [[ "${1:-}" == "--dry-run" ]]; then
  echo "gpu_check.sh would run, writing $RESULTS/gpu_check.json:"
  for step in "${STEPS[@]}"; do echo "  - $step"; done
  exit 0
fi

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA device visible to torch; use --dry-run to list the steps" >&2
  exit 2
fi
mkdir -p "$WORK"
status=0
run() {  # run NAME TIMEOUT_S CMD...: log to $WORK/NAME.log, never abort the whole check
  local name="$1" limit="$2"; shift 2
  echo "== $name: $*"
  if timeout "$limit" "$@" >"$WORK/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (rc $?), see $WORK/$name.log"; status=1; fi
  tail -n 3 "$WORK/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$WORK/env.log" 2>&1
$PY -c "import torch, transformers, lightning; print(torch.__version__, transformers.__version__, lightning.__version__)" >>"$WORK/env.log" 2>&1
cat "$WORK/env.log"
if compgen -G "wheels/*.whl" >/dev/null; then
  run wheels 120 $PY -m pip install --no-deps --no-index wheels/*.whl
else
  echo "== wheels: none carried (trl / liger / flash-attn contenders and tests skip)"
fi

BENCH="$PY benchmarks/train_throughput.py --device cuda"
run tests 150 $PY -m pytest -m gpu -q -p no:cacheprovider
run r1_1.7b 150 $BENCH --model qwen3-1.7b --data r1 --traces 16 --max-length 8192 --cycles 3 --json "$WORK/r1_1.7b.json"
run fixed_1.7b 120 $BENCH --model qwen3-1.7b --data fixed --traces 4 --max-length 8192 --cycles 3 --json "$WORK/fixed_1.7b.json"
run 8b_t3s 150 $BENCH --model qwen3-8b --data fixed --traces 2 --max-length 8192 --precision bf16-true --grad-ckpt \
  --contenders t3s_full t3s_masked --cycles 2 --json "$WORK/8b_t3s.json"
run 8b_hf 150 $BENCH --model qwen3-8b --data fixed --traces 2 --max-length 8192 --precision bf16-true --grad-ckpt \
  --contenders hf_plain --cycles 2 --json "$WORK/8b_hf.json"
run fsdp2_1gpu 150 $PY -m t3s fit --config configs/tiny.yaml --trainer.accelerator=gpu --trainer.devices=1 \
  --trainer.strategy.class_path=ModelParallelStrategy --model.init_args.fsdp_param_dtype=bfloat16 \
  --trainer.max_steps=10 --trainer.default_root_dir="$WORK/fsdp2" --trainer.logger.init_args.save_dir="$WORK/fsdp2"
run score_32k 60 $BENCH --model qwen3-1.7b --score-only --score-length 32768 --json "$WORK/score_32k.json"

$PY - "$WORK" "$RESULTS/gpu_check.json" <<'PY'
import json, pathlib, sys
work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out = {"folder": str(work), "steps": {}}
for f in sorted(work.glob("*.json")):
    out["steps"][f.stem] = json.loads(f.read_text())
tests = work / "tests.log"
if tests.exists():
    out["pytest_gpu"] = tests.read_text().strip().splitlines()[-1:]
t3s, hf = out["steps"].get("8b_t3s", {}), out["steps"].get("8b_hf", {})
if "tps_t3s_full" in t3s and "tps_hf_plain" in hf:
    out["8b_ratio_full_vs_hf"] = t3s["tps_t3s_full"] / hf["tps_hf_plain"]
target.write_text(json.dumps(out, indent=2) + "\n")
print(f"wrote {target}")
PY
exit $status
