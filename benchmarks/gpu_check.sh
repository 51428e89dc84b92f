#!/usr/bin/env bash
# Device check of the optimised streaming DiT path (issue 19), sized to finish within 8 minutes.
#
# With CUDA: the optimised-path tests (the compiled one included) and the DiT tests they guard, then
# bench_dit for mg2-universal at 352x640, 3 steps, random weights, bf16: reference vs optimised (eager)
# vs compiled (CUDA graphs via mode="reduce-overhead"), one `speedup ...` line at the end.
# Without CUDA: the same tests on the CPU and bench_dit for the tiny preset.
#
#     bash benchmarks/gpu_check.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."

export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/worldplayer-inductor}"  # warm reruns
export WORLDPLAYER_CACHE="${WORLDPLAYER_CACHE:-${TMPDIR:-/tmp}/worldplayer-cache}"  # AOTInductor packages (CPU compiled path)
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    device=cuda
    python -c "import torch; print('device:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
else
    device=cpu
    echo "device: no CUDA GPU; CPU check with the tiny preset"
fi

# tests: 4 minutes at most (the compiled test is marked slow; it is run here on purpose)
timeout 240 python -m pytest -q -m "slow or not slow" tests/test_optimized_dit.py \
    tests/test_model_streaming.py tests/test_model_session.py tests/test_session.py

# benchmark: 4 minutes at most (the mg2 compile included)
if [ "$device" = cuda ]; then
    timeout 240 python benchmarks/bench_dit.py --device cuda --preset mg2-universal --steps 3 --dtype bf16 \
        --paths reference,optimised,compiled --blocks 5
else
    timeout 240 python benchmarks/bench_dit.py --device cpu --preset tiny --dtype bf16 \
        --paths reference,optimised,compiled --blocks 10
fi
