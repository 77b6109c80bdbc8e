"""Every kernel the CUDA backend emits compiles to PTX (sm_80, sm_90) and assembles with ptxas.

Runs in the normal process (no GPU and no driver needed; the simulator process skips it). The
M1 and M2 training steps plus a graph that uses every other kernel kind are rendered exactly as
`backend="cuda"` renders them for a GPU; ptxas must report no register spills. The report lines
(registers, shared memory per kernel) are printed (`pytest -s` shows them).
"""

import numpy as np
import pytest

import symgraph as sg
from symgraph.bench.workloads import build_m1, build_m2
from symgraph.lower import lower
from symgraph.passes.pipeline import optimize

ptx = pytest.importorskip("symgraph.backends.cuda.ptx")
try:
    ptx.find_ptxas()
    ptx.load_cuda()
except sg.SymgraphError as exc:  # the `cuda` extra is not installed
    pytest.skip(str(exc), allow_module_level=True)


def _program(inputs, results):
    optimized, _ = optimize(list(results), 2)
    return lower(inputs, optimized)


def _other_kinds():
    """Gather, scatter-add (of input and of computed labels, which the kernels bounds-check
    into a flag buffer), argmax, concatenate, unslice, column/row reductions, random."""
    x = sg.placeholder(("batch", 40), name="x")
    table = sg.variable(np.ones((12, 40), np.float32), name="table")
    labels = sg.placeholder(("batch",), dtype="int32", name="labels")
    rows = sg.take(table, labels)
    shifted = sg.take(table, labels + 1)
    loss = (sg.sum(rows * x) + sg.sum(sg.concatenate([x, x[:, 1:5] * 2.0], axis=1) ** 2.0)
            + sg.sum(shifted * shifted))
    g_table, g_x = sg.grad(loss, [table, x])
    outs = [loss, g_table, g_x, sg.argmax(x, axis=1), sg.mean(x, axis=0),
            sg.dropout(x, 0.3, seed=2), sg.softmax(x), sg.transpose(x) @ x,
            sg.take(table, sg.argmax(x, axis=1))]
    return [x, labels], outs


def _m1():
    g = build_m1()
    return g.inputs, [g.loss, *g.updates.values()]


def _m2():
    g = build_m2()
    return g.inputs, [g.loss, *g.updates.values()]


@pytest.fixture(scope="module")
def reports():
    out = {}
    for name, make in (("m1", _m1), ("m2", _m2), ("kinds", _other_kinds)):
        out[name] = ptx.compile_program(_program(*make()), ccs=((8, 0), (9, 0)))
    return out


def test_every_kernel_assembles_without_spills(reports):
    for name, rows in reports.items():
        print(f"\n{name}:\n" + ptx.format_report(rows))
        assert {r.cc for r in rows} == {(8, 0), (9, 0)}
        for r in rows:
            assert r.spill_stores == 0 and r.spill_loads == 0, str(r)
            assert r.registers > 0 and r.ptx_chars > 0, str(r)


def test_report_lists_registers_and_shared_memory(reports):
    matmuls = [r for r in reports["m1"] if r.note.startswith("matmul")]
    assert matmuls and all(r.shared_bytes >= 2 * 16 * 64 * 4 for r in matmuls)  # As + Bs tiles
    reductions = [r for r in reports["m2"] if r.note.startswith("reduce")]
    assert reductions
    kinds = {r.note.split("[")[0] for r in reports["kinds"]}
    assert {"elementwise", "reduce", "matmul", "index"} <= kinds
    line = str(reports["m1"][0])
    assert "regs=" in line and "smem=" in line and "spill=" in line


def test_computed_labels_are_checked_in_the_kernels():
    from symgraph.backends.cuda.kernels import render_program

    module = render_program(_program(*_other_kinds()))
    assert sorted(n.op for n in module.checked) == ["scatter_add", "take", "take"]
    flagged = [launch for launches in module.launches.values() for launch in launches
               if ("bounds",) in launch.args]
    assert len(flagged) == 3 and all("bounds[" in launch.source for launch in flagged)


def test_ptxas_output_parser():
    text = ("ptxas info    : Function properties for k0\n"
            "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
            "ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem\n")
    assert ptx.parse_ptxas(text) == {"registers": 40, "shared_bytes": 2048, "stack_bytes": 8,
                                     "spill_stores": 4, "spill_loads": 12}


def test_no_gpu_is_a_clear_error():
    x = sg.placeholder((3,), name="x")
    with pytest.raises(sg.SymgraphError, match="no usable NVIDIA GPU"):
        sg.function([x], x * 2.0, backend="cuda")


def test_missing_cuda_install_says_what_to_install(monkeypatch):
    import sys

    import numba

    from symgraph.backends.cuda import load_cuda

    monkeypatch.delattr(numba, "cuda", raising=False)
    monkeypatch.setitem(sys.modules, "numba.cuda", None)  # as if numba-cuda were absent
    with pytest.raises(sg.SymgraphError, match=r"pip install 'symgraph\[cuda\]'"):
        load_cuda()


def test_gpu_benchmark_exits_cleanly_without_a_gpu(capsys):
    from symgraph.bench import gpu

    assert gpu.main([]) == 2
    assert "no GPU benchmark on this machine" in capsys.readouterr().err


def test_max_min_and_sign_kernels_keep_nan_in_machine_code():
    """Numba's max/min lower to fmax/fmin (PTX max.f32/min.f32), which return the operand that
    is not NaN; NumPy's max, maximum, argmax and sign keep a NaN, and so must every kernel."""
    from numba import cuda

    from symgraph.backends.cuda.device import import_module
    from symgraph.backends.cuda.kernels import render_program

    x = sg.placeholder(("batch", 40), name="x")
    x64 = sg.placeholder((5, 7), "float64", name="x64")
    outs = [sg.max(x, 1), sg.max(x, 0), sg.argmax(x, 1), sg.maximum(1.0, x) * sg.minimum(x, 2.0),
            sg.sign(x), sg.relu6(x), sg.max(x64, 1), sg.min(x64, 0), sg.sign(x64)]
    module = render_program(_program([x, x64], outs))
    functions = import_module(module)
    dropping = []
    for launches in module.launches.values():
        for launch in launches:
            code, _ = cuda.compile_ptx(getattr(functions, launch.func),
                                       ptx._signature(launch.args), cc=(8, 0))
            dropping += [(launch.func, w) for w in code.split()
                         if w.startswith(("max.f", "min.f"))]
    assert not dropping
