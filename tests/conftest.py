"""Test-process setup. Runs before any test module imports jax.

* XLA_FLAGS: disable the concurrency-optimised CPU scheduler, which can hang vmapped batched
  `eigh` on jaxlib 0.10.x with 2 cores (docs/troubleshooting.md). Every test also has a timeout
  (pyproject: pytest-timeout) so that a hang fails fast.
* XLA_FLAGS: LLVM optimisation level 0 for compiled CPU code (compile time; see below).
* Rank promotion raises: silent broadcasting of mismatched ranks is a bug in library code.
* Dtype promotion is strict: an implicit float32/float64 or int/float mix is a bug too.
* A persistent XLA compilation cache (folder `.jax_cache` in the checkout, or
  `JSPARSE_TEST_JAX_CACHE`; `off` disables it): the suite's time is mostly XLA compilation, and the
  same programs are compiled by several test files, by subprocess tests, and again by the
  JAX_ENABLE_X64 pass for every explicitly float64 case. Set through the environment so that
  subprocesses started by tests share it. Only compilation is cached; every test still runs.
"""
import os
import pathlib

_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
# LLVM's optimisation of the compiled CPU code is most of the suite's compile time, and the test
# programs are small: level 0 cut compile time 20-40 % per file (unmixing solvers 72 -> 49 s wall).
# XLA's own graph optimisations still run, so each program computes the same thing; the README's
# main job and the benchmarks run at the default level. Set the flag yourself to override.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ["XLA_FLAGS"] + " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JSPARSE_PROGRESS", "0")

_CACHE = os.environ.get("JSPARSE_TEST_JAX_CACHE", str(pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))
if _CACHE.lower() not in ("", "0", "off", "none"):
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

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


def _x64_pass() -> bool:
    return os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "yes", "on")


def pytest_collection_modifyitems(config, items):
    """Under JAX_ENABLE_X64=1 (CI's second pass) leave out tests marked `default_pass_only` and
    tests that take the `x64` fixture (they run under 64-bit types in both passes).

    The second pass exists to catch float64-default dtype bugs in numeric code. Tests of files,
    processes, command lines and report text (the marked modules) take no path that depends on
    JAX's default float width, and they are the suite's slowest per test (subprocesses that
    import JAX); the default pass runs them, and explicitly float64 cases run there too."""
    if not _x64_pass():
        return
    # A test that takes the `x64` fixture runs under enable_x64(True) in every pass: the default
    # pass ran it already (as the contract suites' 64-bit cases, `tests/contract.py`).
    kept = [item for item in items
            if item.get_closest_marker("default_pass_only") is None and "x64" not in getattr(item, "fixturenames", ())]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def _is_dependency_skip(report) -> bool:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return "could not import" in reason or "pip install" in reason


def pytest_sessionfinish(session, exitstatus):
    """With JSPARSE_NO_DEPENDENCY_SKIPS=1 (set by CI), a test skipped for a missing optional
    dependency fails the run: the whole suite must run, not just the part whose extras are
    installed."""
    if os.environ.get("JSPARSE_NO_DEPENDENCY_SKIPS") != "1" or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [r for r in (reporter.stats.get("skipped", []) if reporter else []) if _is_dependency_skip(r)]
    if skipped:
        reporter.ensure_newline()
        for r in skipped:
            reporter.write_line(f"dependency skip is a failure here: {r.nodeid}: {r.longrepr[2]}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
