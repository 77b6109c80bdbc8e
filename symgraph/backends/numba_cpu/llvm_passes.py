"""The target machine and optimization pipeline of the native path, importing only llvmlite:
llvmjit.py uses them in the process, and a compile helper process (llvmjit's parallel
compile) loads this file alone, without the symgraph package, NumPy or Numba.

The helper reads LLVM IR on stdin and writes the object code on stdout:

    python llvm_passes.py <cpu> <features> <speed> < module.ll > module.o
"""

from __future__ import annotations

import sys

import llvmlite.binding as llvm


def target_machine(cpu: str, features: str):
    """A JIT target machine for this CPU (static relocations, as Numba's: x86's JIT needs
    them)."""
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=cpu, features=features, opt=3, reloc="static", codemodel="jitdefault", jit=True)


def optimize(module, tm, speed: int = 3) -> None:
    """LLVM's -O3 pipeline with loop and SLP vectorization (`speed` 1: -O1, no vectorizers)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=speed)
    pto.loop_vectorization = pto.slp_vectorization = speed > 1
    # No unrolling or interleaving: half the IR (M2 1,182 -> 611 kB) and a 17% shorter cold
    # compile (M2 2.23 -> 1.84 s), steps no slower (M2 0.94x, M1 0.95x the time, median
    # ratios of alternating processes; docs/numba-backend.md)
    pto.loop_unrolling = False
    pto.loop_interleaving = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


def compile_text(text: str, tm, speed: int = 3) -> bytes:
    """Object code for a module's IR text."""
    mod = llvm.parse_assembly(text)
    mod.verify()
    optimize(mod, tm, speed)
    return tm.emit_object(mod)


def main() -> None:
    cpu, features, speed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    sys.stdout.buffer.write(compile_text(sys.stdin.read(), target_machine(cpu, features), speed))


if __name__ == "__main__":
    main()
