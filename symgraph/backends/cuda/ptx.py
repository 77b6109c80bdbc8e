"""Compile every rendered kernel to PTX and cubin without a GPU: the compile report.

Stage: a check on the backend's output (tests/backends/test_cuda_ptx.py, `symgraph bench`).
`numba.cuda.compile_ptx` needs NVVM and NVRTC but no driver; the pip wheel's `ptxas -v` then
assembles the PTX for a real architecture and reports registers, shared memory and spills per
kernel. Use the wheel's ptxas (cuda.pathfinder finds it): the system one may be older than the
PTX ISA that the pip NVVM emits (notes/numba-cuda.md). Not in the simulator process: there
`compile_ptx` does not exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from symgraph.backends.cuda import INSTALL_HINT, load_cuda
from symgraph.backends.cuda.kernels import GPU, CudaModule, Target, render_program
from symgraph.errors import SymgraphError

CCS = ((8, 0), (9, 0))


@dataclass(frozen=True)
class KernelReport:
    """ptxas's verdict on one kernel function for one architecture."""

    func: str
    note: str
    cc: tuple
    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    ptx_chars: int

    def __str__(self) -> str:
        return (f"{self.func:<10} sm_{self.cc[0]}{self.cc[1]} regs={self.registers:<3} "
                f"smem={self.shared_bytes:<5} stack={self.stack_bytes} "
                f"spill={self.spill_stores}/{self.spill_loads}  {self.note}")


def find_ptxas() -> str:
    """The ptxas of the pip `cuda-toolkit[nvcc]` wheel, matching the pip NVVM's PTX ISA."""
    try:
        from cuda.pathfinder import find_nvidia_binary_utility
    except ImportError:
        raise SymgraphError(f"cuda.pathfinder is missing; {INSTALL_HINT}") from None
    path = find_nvidia_binary_utility("ptxas")
    if not path:
        raise SymgraphError(f"ptxas was not found; {INSTALL_HINT}")
    return path


def _signature(args):
    from numba import from_dtype, types

    sig = []
    for arg in args:
        if arg[0] == "int":
            sig.append(types.int64)
        elif arg[0] == "bounds":  # the out-of-range flags (kernels.py, device_checked)
            sig.append(types.Array(types.int64, 1, "C"))
        else:
            scalar = types.boolean if arg[2] == "bool" else from_dtype(np.dtype(arg[2]))
            sig.append(types.Array(scalar, 1, "C"))
    return tuple(sig)


_NUMBERS = {
    "registers": r"Used (\d+) registers",
    "shared_bytes": r"(\d+) bytes smem",
    "stack_bytes": r"(\d+) bytes stack frame",
    "spill_stores": r"(\d+) bytes spill stores",
    "spill_loads": r"(\d+) bytes spill loads",
}


def parse_ptxas(text: str) -> dict:
    """The numbers of `ptxas -v` output (0 where a line is absent, e.g. no shared memory)."""
    out = {}
    for key, pattern in _NUMBERS.items():
        found = [int(m) for m in re.findall(pattern, text)]
        out[key] = max(found) if found else 0
    return out


def _compile_one(path: str, name: str, func: str, args, note: str, cc, ptxas: str) -> KernelReport:
    """PTX for one function and arch, assembled by ptxas (runs in a worker process too)."""
    import importlib.util
    import sys

    from numba import cuda

    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    sig = _signature(args)
    ptx, _ = cuda.compile_ptx(getattr(mod, func), sig, cc=cc)
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, f"{func}.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        done = subprocess.run([ptxas, "-v", f"-arch={arch}", src, "-o",
                               os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
    if done.returncode:
        raise SymgraphError(f"ptxas rejected {func} ({note}) for {arch}: {done.stderr.strip()}")
    return KernelReport(func, note, tuple(cc), ptx_chars=len(ptx),
                        **parse_ptxas(done.stdout + done.stderr))


def compile_module(module: CudaModule, ccs=CCS, ptxas: str | None = None,
                   workers: int | None = None) -> list[KernelReport]:
    """PTX via numba-cuda and a cubin via ptxas for every launch of `module`, per arch.

    Compiling is CPU-bound Python (Numba's typing and lowering): `workers` processes share it.
    """
    cuda = load_cuda()
    if getattr(cuda, "compile_ptx", None) is None:
        raise SymgraphError("PTX compilation is unavailable inside the CUDA simulator "
                            "(NUMBA_ENABLE_CUDASIM=1); run it in a separate process")
    from symgraph.backends.cuda.device import import_module

    mod = import_module(module)
    ptxas = ptxas or find_ptxas()
    jobs = [(mod.__file__, mod.__name__, launch.func, tuple(launch.args), launch.note, cc, ptxas)
            for launches in module.launches.values() for launch in launches for cc in ccs]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [_compile_one(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_compile_one, *job) for job in jobs]
        return [f.result() for f in futures]


def compile_program(program, target: Target = GPU, ccs=CCS,
                    workers: int | None = None) -> list[KernelReport]:
    """Render a lowered Program for `target` and compile every kernel (see compile_module)."""
    return compile_module(render_program(program, target), ccs, workers=workers)


def format_report(reports) -> str:
    """One line per kernel and architecture: registers, shared memory, stack and spills."""
    return "\n".join(str(r) for r in reports)
