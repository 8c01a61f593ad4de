"""Test-process setup. Runs before any test module imports jax.

* XLA_FLAGS: disable the concurrency-optimised CPU scheduler, which can hang vmapped batched
  `eigh` on jaxlib 0.10.x with 2 cores (docs/troubleshooting.md). Every test also has a timeout
  (pyproject: pytest-timeout) so that a hang fails fast.
* Rank promotion raises: silent broadcasting of mismatched ranks is a bug in library code.
* Dtype promotion is strict: an implicit float32/float64 or int/float mix is a bug too.
"""
import os

_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JSPARSE_PROGRESS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Strict dtype promotion: mixing float32 with float64 (or ints with floats) must be written out.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Run the test body with 64-bit types enabled (whatever JAX_ENABLE_X64 says)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compilation caches after each test module.

    One pytest process compiles thousands of XLA programs; keeping all of them alive made XLA's
    CPU compiler segfault late in the full suite (jaxlib 0.10.2, reproducible in the same test,
    never when that module ran alone). Modules do not share compiled programs, so this is free.
    """
    yield
    jax.clear_caches()
