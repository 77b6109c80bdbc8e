"""Compiled-kernel and training benchmarks: the `symgraph bench` command.

    workloads.py     M1/M2 training steps as graphs and as hand-written NumPy
    peers.py         the same steps in PyTorch eager and JAX jit (when importable)
    roofline.py      FLOPs and bytes per kernel, fraction of the machine's roof
    limits.py        suite `limits`: measured GEMM GFLOP/s and STREAM GB/s
    kernels.py       suite `kernels`: single kernels per backend vs unfused NumPy
    train.py         suite `train` (train_worker.py: one fresh process per measurement)
    compile_time.py  suite `compile`: cold/warm compile and pass times vs graph size
    timing.py        repeats, medians, thread pinning, the environment record
    report.py        terminal tables, JSON, PNG chart, docs/benchmarks.md
    cli.py           `symgraph bench`
"""
