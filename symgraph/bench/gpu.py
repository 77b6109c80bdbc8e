"""GPU benchmark: the M1/M2 training steps and every kernel's GB/s and GFLOP/s on the roofline.

Run on a machine with an NVIDIA GPU and the `cuda` extra: `python -m symgraph.bench.gpu`
(`--quick` for fewer steps, `--json PATH` to save the numbers). Without a GPU it exits with a
message saying so. Inside the CUDA simulator (NUMBA_ENABLE_CUDASIM=1) it runs only with
`--smoke` (tiny layer sizes, a code-path check whose timings mean nothing).

Roofline: the device's peaks are measured here (a streaming copy for bandwidth, an FMA chain for
FP32 throughput) and also derived from its attributes; a kernel's roof is
min(peak FLOP/s, intensity x peak bandwidth), with FLOPs and bytes from lower.py's counts (each
buffer read or written once: what perfect fusion would move).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

import symgraph as sg
from symgraph.backends.cuda import load_cuda, require_gpu, simulating
from symgraph.bench.workloads import build_m1, build_m2, make_batch, matmul_flops
from symgraph.errors import SymgraphError
from symgraph.files import write_text
from symgraph.program import kernel_flops

FP32_LANES_PER_SM = {(7, 0): 64, (8, 0): 64, (8, 6): 128, (8, 9): 128, (9, 0): 128,
                     (10, 0): 128, (12, 0): 128}


def device_info(cuda) -> dict:
    """Name, compute capability and the peaks its attributes imply."""
    dev = cuda.get_current_device()
    cc = tuple(dev.compute_capability)
    sms = dev.MULTIPROCESSOR_COUNT
    clock_hz = dev.CLOCK_RATE * 1e3
    lanes = FP32_LANES_PER_SM.get(cc, 128)
    bus_bytes = dev.GLOBAL_MEMORY_BUS_WIDTH / 8
    mem_hz = dev.MEMORY_CLOCK_RATE * 1e3
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "cc": list(cc), "sms": sms,
            "spec_fp32_gflops": 2 * sms * lanes * clock_hz / 1e9,
            "spec_bandwidth_gbs": 2 * mem_hz * bus_bytes / 1e9}


def _event_seconds(cuda, start, end) -> float:
    end.synchronize()
    return max(start.elapsed_time(end), 0.0) / 1e3  # the simulator answers -1


def measure_peaks(cuda, quick: bool) -> dict:
    """Measured roofs: a grid-stride copy (GB/s, read + write) and an FMA chain (GFLOP/s)."""
    @cuda.jit
    def copy(src, dst):
        for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
            dst[i] = src[i]

    @cuda.jit
    def fma(out, n):
        i = cuda.grid(1)
        a, b = np.float32(i * 1e-9), np.float32(0.999)
        c, d = np.float32(1e-3), np.float32(0.5)
        for _ in range(n):  # four independent chains keep the pipelines busy
            a = a * b + c
            d = d * b + c
        out[i] = a + d

    n = (1 << 24) if quick else (1 << 27)
    src = cuda.device_array(n, np.float32)
    dst = cuda.device_array(n, np.float32)
    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    copy[sms * 8, 256](src, dst)
    start, end = cuda.event(), cuda.event()
    reps = 5 if quick else 20
    start.record()
    for _ in range(reps):
        copy[sms * 8, 256](src, dst)
    end.record()
    bandwidth = 2 * n * 4 * reps / _event_seconds(cuda, start, end) / 1e9
    threads = sms * 2048
    out = cuda.device_array(threads, np.float32)
    iters = 4096
    fma[threads // 256, 256](out, iters)
    start.record()
    fma[threads // 256, 256](out, iters)
    end.record()
    gflops = 2 * 2 * iters * threads / _event_seconds(cuda, start, end) / 1e9
    return {"bandwidth_gbs": bandwidth, "fp32_gflops": gflops}


def _roof(flops: float, nbytes: float, peaks: dict) -> float:
    if nbytes == 0:
        return peaks["fp32_gflops"] * 1e9
    return min(peaks["fp32_gflops"] * 1e9, flops / nbytes * peaks["bandwidth_gbs"] * 1e9)


def bench_step(name: str, graph, batch: int, steps: int, peaks: dict) -> dict:
    """Wall time per training step through sg.function, then each kernel timed alone."""
    cuda = load_cuda()
    x, y = make_batch(batch, features=graph.inputs[0].shape[1])
    start = time.perf_counter()
    fn = sg.function(graph.inputs, graph.loss, updates=graph.updates, backend="cuda")
    fn(x, y)  # compiles the kernels (numba's cache makes later runs faster)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn(x, y)  # returns host arrays, so each call ends synchronized
        times.append(time.perf_counter() - t0)
    program = fn._run.plan
    dims = {"batch": batch}
    stream = program.streams[0]
    rows, kernel_total = [], 0.0
    for kernel in program.program.kernels:
        reps = 3 if simulating() else 20
        begin, end = cuda.event(), cuda.event()
        program.relaunch(kernel.id, stream)
        begin.record(stream)
        for _ in range(reps):
            program.relaunch(kernel.id, stream)
        end.record(stream)
        seconds = _event_seconds(cuda, begin, end) / reps
        flops = kernel_flops(kernel, dims)
        nbytes = sum(program.program.buffer(n).nbytes(dims) for n in kernel.reads + kernel.writes
                     if n.id in program.program.buffer_of)
        kernel_total += seconds
        achieved = flops / seconds if seconds else float("nan")
        roof = _roof(flops, nbytes, peaks)
        rows.append({"kernel": f"k{kernel.id}", "ops": f"{kernel.kind}: {kernel.ops()}",
                     "us": seconds * 1e6, "gflops": achieved / 1e9,
                     "gbs": nbytes / seconds / 1e9 if seconds else float("nan"),
                     "roof_gflops": roof / 1e9,
                     "of_roof": achieved / roof if roof and seconds else float("nan")})
    sizes = [graph.inputs[0].shape[1]] + [v.shape[1] for k, v in graph.state.items()
                                           if k.startswith("W")]
    gemm = matmul_flops(sizes, batch)
    step_s = statistics.median(times)
    return {"model": name, "batch": batch, "steps": steps, "compile_s": compile_s,
            "step_ms_median": step_s * 1e3, "step_ms_min": min(times) * 1e3,
            "samples_per_s": batch / step_s, "kernels": len(rows),
            "kernels_ms": kernel_total * 1e3, "gemm_gflops_per_step": gemm / 1e9,
            "gemm_tflops_at_kernel_time": gemm / kernel_total / 1e12 if kernel_total else None,
            "per_kernel": rows}


def format_result(result: dict) -> str:
    info, peaks = result["device"], result["peaks"]
    lines = [f"device: {info['name']} (sm_{info['cc'][0]}{info['cc'][1]}, {info['sms']} SMs); "
             f"spec {info['spec_fp32_gflops']:.0f} GFLOP/s fp32, "
             f"{info['spec_bandwidth_gbs']:.0f} GB/s; measured {peaks['fp32_gflops']:.0f} "
             f"GFLOP/s, {peaks['bandwidth_gbs']:.0f} GB/s"]
    for step in result["steps"]:
        lines.append(f"\n{step['model']} batch {step['batch']}: step {step['step_ms_median']:.3f}"
                     f" ms median ({step['samples_per_s']:.0f} samples/s), kernels alone "
                     f"{step['kernels_ms']:.3f} ms in {step['kernels']} kernels, compile "
                     f"{step['compile_s']:.1f} s")
        lines.append(f"  {'kernel':<6} {'us':>9} {'GFLOP/s':>9} {'GB/s':>8} {'of roof':>8}  ops")
        for r in step["per_kernel"]:
            lines.append(f"  {r['kernel']:<6} {r['us']:>9.1f} {r['gflops']:>9.1f} "
                         f"{r['gbs']:>8.1f} {r['of_roof']:>8.1%}  {r['ops'][:60]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symgraph.bench.gpu", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny layers; the only mode allowed in the simulator")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    try:
        cuda = load_cuda()
        require_gpu(cuda)
    except SymgraphError as exc:
        print(f"symgraph.bench.gpu: no GPU benchmark on this machine: {exc}", file=sys.stderr)
        return 2
    if simulating() and not args.smoke:
        print("symgraph.bench.gpu: the CUDA simulator gives no meaningful timings; use --smoke "
              "to check the code path, or run on a GPU", file=sys.stderr)
        return 2
    if args.smoke:
        info = {"name": "simulator", "cc": [0, 0], "sms": 1, "spec_fp32_gflops": 1.0,
                "spec_bandwidth_gbs": 1.0}
        peaks = {"bandwidth_gbs": 1.0, "fp32_gflops": 1.0}
        models = [("M1", build_m1((16, 32, 10))), ("M2", build_m2((16, 32, 10)))]
        batch, steps = 8, 2
    else:
        info, peaks = device_info(cuda), measure_peaks(cuda, args.quick)
        models = [("M1", build_m1()), ("M2", build_m2())]
        batch, steps = args.batch, 20 if args.quick else 200
    result = {"device": info, "peaks": peaks,
              "steps": [bench_step(name, g, batch, steps, peaks) for name, g in models]}
    print(format_result(result))
    if args.json:
        write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
