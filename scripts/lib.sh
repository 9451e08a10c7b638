# Shared by gpu_ci.sh, refresh_baseline.sh and noise_floor.sh (source it; not a command).
PY=${PYTHON:-python3}

# Folder name of this machine's GPU under reports/baselines/: "NVIDIA H100 80GB HBM3" -> nvidia-h100-80gb-hbm3.
# Exits 2 when torch sees no CUDA device: a GPU baseline means nothing without one.
gpu_slug() {
  "$PY" - <<'PYEOF'
import re, sys
import torch
if not torch.cuda.is_available():
    sys.stderr.write("error: torch sees no CUDA device; GPU baselines need one\n")
    sys.exit(2)
print(re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-"))
PYEOF
}
