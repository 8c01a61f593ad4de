"""Run a script in a fresh Python with N simulated CPU devices (JAX fixes the count at start-up)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_with_devices(script: str, devices: int = 4, timeout: int = 500) -> str:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
        " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()
    env["JSPARSE_PROGRESS"] = "0"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout
