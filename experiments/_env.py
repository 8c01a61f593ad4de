"""Process setup shared by every experiment and benchmark entry point (import before jax)."""
import os

# jaxlib 0.10.x on small CPUs can hang in vmapped batched eigh with the concurrency-optimised
# scheduler (docs/troubleshooting.md); turning it off costs nothing measurable.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def configure() -> None:
    if _FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()


configure()
