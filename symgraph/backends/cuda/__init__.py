"""The Numba CUDA backend: `sg.function(..., backend="cuda")`.

Pipeline inside the backend: lower.py's Program -> kernels.py renders one numba-cuda function
per launch (sharing the op table's scalar templates with the CPU generator) -> device.py runs
them with device-resident state, planned buffers and streams. ptx.py compiles the same source to
PTX and cubin without a GPU, which is how the kernels are checked on machines that have none.

A missing CUDA installation or GPU raises a SymgraphError that says what to do; the simulator
(`NUMBA_ENABLE_CUDASIM=1`, set before numba is imported) runs everything without a GPU.
"""

from __future__ import annotations

import os

from symgraph import envvars
from symgraph.errors import SymgraphError

INSTALL_HINT = ("install the CUDA extra: pip install 'symgraph[cuda]' (numba-cuda with the CUDA "
                "13 runtime, NVVM/NVRTC and the nvcc wheel for ptxas)")


def simulating() -> bool:
    """True in Numba's CUDA simulator (the variable is read when numba.cuda is first imported)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def load_cuda():
    """`numba.cuda` from numba-cuda, or a SymgraphError naming what to install."""
    try:
        from numba import cuda
    except Exception as exc:  # ImportError, or a missing libcudart/libnvrtc at import time
        raise SymgraphError(f"the CUDA backend cannot load numba.cuda ({type(exc).__name__}: "
                            f"{exc}); {INSTALL_HINT}") from None
    if not simulating() and getattr(cuda, "implementation", None) != "NVIDIA":
        raise SymgraphError("numba.cuda is Numba's deprecated built-in CUDA target, not "
                            f"numba-cuda; {INSTALL_HINT}")
    return cuda


def require_gpu(cuda) -> None:
    """A clear error when no usable GPU (or driver) is present; the simulator needs none."""
    if simulating():
        return
    try:
        ok = cuda.is_available()
    except Exception:  # a broken driver install raises instead of answering
        ok = False
    if not ok:
        raise SymgraphError("backend='cuda' found no usable NVIDIA GPU (no CUDA driver or device "
                            "on this machine). Use backend='numba' or 'numpy' here, or set "
                            "NUMBA_ENABLE_CUDASIM=1 before importing numba to run the kernels in "
                            "Numba's (slow) CUDA simulator.")


class CudaBackend:
    """Backend protocol: `compile(inputs, results, check_nan) -> run(arrays, dims) -> arrays`."""

    name = "cuda"

    def __init__(self, streams: int | None = None):
        self.streams = streams or envvars.integer("SYMGRAPH_CUDA_STREAMS", 2)

    def compile(self, inputs, results, check_nan: bool = False, workers: int | None = None):
        cuda = load_cuda()
        require_gpu(cuda)
        from symgraph.backends.cuda.device import CudaProgram

        program = CudaProgram(cuda, inputs, results, check_nan=check_nan,
                              simulate=simulating(), streams=workers or self.streams)

        def run(arrays, dims):
            return program.run(arrays, dims)

        run.plan = program
        return run
