"""The zoo's reproducibility mode: training whose bytes do not depend on the x86 machine.

Same seed, same data order and deterministic algorithms give the same bytes only while every
floating-point sum is done in the same order. On CPU that order is chosen at run time from the
processor: PyTorch dispatches its elementwise / reduction / softmax / layer-norm kernels to an
AVX-512, AVX2 or plain build (``ATEN_CPU_CAPABILITY``, 16, 8 or 1 lanes per partial sum), MKL picks
its GEMM kernels from CPUID, oneDNN JIT-compiles for the ISA it finds, glibc's libm resolves
``exp``/``log``/``pow`` to FMA or non-FMA variants, and OpenMP splits reductions by the thread count.
Issue #18 saw every retrained weight file differ on another Xeon (max |Δw| up to 0.70).

The mode pins every one of those choices to the one every x86-64 processor has:

==========================  ===========================================  =================================
setting                     value                                        pins
==========================  ===========================================  =================================
``ATEN_CPU_CAPABILITY``     ``default``                                  ATen kernels: the SSE2 build
``MKL_CBWR``                ``COMPATIBLE,STRICT``                        MKL: SSE2 code path, strict CNR
``MKL_ENABLE_INSTRUCTIONS`` unset (dropped)                              (CBWR decides)
``GLIBC_TUNABLES``          ``glibc.cpu.hwcaps=-AVX2,-FMA,...``          libm: the non-FMA ``exp``/``log``
``OMP/MKL_NUM_THREADS``     ``1``                                        no thread-count-dependent splits
``torch.backends.mkldnn``   ``enabled = False`` (in process)             no oneDNN JIT kernels
deterministic algorithms    ``torch.use_deterministic_algorithms(True)``
==========================  ===========================================  =================================

The environment variables are read once, when the libraries start, so they must be set before
``torch`` is imported: :func:`environment` gives the environment a fresh training process is
started with (``train.py`` runs each family in a spawned child), and :func:`apply` (called in
that child) sets the in-process switches and refuses to train if the kernels were already chosen
otherwise. What this buys and costs is measured in ``circuitdiff/zoo/README.md``; the proof is
``tests/engine/test_zoo_reproducible.py`` (and ``benchmarks/zoo_reproducible.py`` for full retrains).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# glibc >= 2.33 spellings; unknown names are ignored by glibc, so older ones simply keep FMA libm.
_HWCAPS_OFF = "-AVX512F,-AVX2,-FMA,-FMA4,-AVX"

ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "GLIBC_TUNABLES": f"glibc.cpu.hwcaps={_HWCAPS_OFF}",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_DYNAMIC": "FALSE",
}
# Outside settings that would override the pinned ones (MKL_ENABLE_INSTRUCTIONS caps MKL's ISA and
# changes kernels; DNNL_* only matter if oneDNN ran, dropped for a clean record).
DROPPED = ("MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "KMP_AFFINITY")


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with the mode's variables set and the overriding ones dropped."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in DROPPED}
    env.update(ENV)
    return env


def active() -> bool:
    """Whether this process was started with the mode's environment."""
    return all(os.environ.get(k) == v for k, v in ENV.items())


class ReproducibilityError(RuntimeError):
    pass


def apply() -> dict[str, str]:
    """Set the in-process switches; fail if the kernel choice was not pinned before torch started.

    Returns what was applied (recorded in each model's ``training.json``)."""
    import torch

    if not active():
        missing = {k: v for k, v in ENV.items() if os.environ.get(k) != v}
        raise ReproducibilityError(f"reproducible mode needs these set before torch is imported: {missing}")
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise ReproducibilityError(f"ATen dispatches to {capability} kernels; ATEN_CPU_CAPABILITY=default "
                                   "must be set before torch is imported")
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return settings()


def settings() -> dict[str, str]:
    """The kernel choices this process runs with, as recorded in ``training.json``."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": str(torch.backends.mkldnn.enabled),
        "threads": str(torch.get_num_threads()),
        "deterministic": str(torch.are_deterministic_algorithms_enabled()),
        **{k: os.environ.get(k, "") for k in ENV},
    }
