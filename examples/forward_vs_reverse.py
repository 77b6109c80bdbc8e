"""Forward vs reverse mode on a scalar function of n inputs.

Reverse mode (`sg.grad`) gives all n partial derivatives from one gradient graph; forward mode
(`sg.jvp`) gives one directional derivative per graph, so the full gradient needs n of them.
Run: python examples/forward_vs_reverse.py
"""

import time

import numpy as np

import symgraph as sg


def scalar_function(x: sg.Node, n: int) -> sg.Node:
    """f(x) = sum(tanh(A x)^2) + sum(x * sin-ish mixing), a scalar of n inputs."""
    rng = np.random.default_rng(0)
    A = sg.constant(rng.standard_normal((n, n)) / np.sqrt(n))
    h = sg.tanh(A @ x)
    return sg.sum(h * h) + sg.sum(sg.exp(-x * x))


def compare(n: int, repeats: int = 20) -> dict:
    """Graph sizes and evaluation times of the full gradient by reverse and by forward mode."""
    x = sg.placeholder((n,), "float64", name="x")
    f = scalar_function(x, n)
    reverse = sg.grad(f, x)
    basis = [sg.constant(np.eye(n)[i]) for i in range(n)]
    forward = [sg.jvp(f, [x], [e]) for e in basis]  # one jvp per input direction
    rev_fn = sg.function([x], reverse, optimize=1)
    fwd_fn = sg.function([x], forward, optimize=1)
    x0 = np.linspace(-1, 1, n)
    np.testing.assert_allclose(np.array(fwd_fn(x0)), rev_fn(x0), rtol=1e-10, atol=1e-12)

    def timed(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x0)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    return {"n": n, "reverse_nodes": len(sg.topo_order([reverse])),
            "forward_nodes": len(sg.topo_order(forward)),
            "reverse_ms": timed(rev_fn) * 1e3, "forward_ms": timed(fwd_fn) * 1e3}


def main(sizes=(2, 8, 32, 128)) -> list[dict]:
    rows = [compare(n) for n in sizes]
    print(f"{'n':>5} {'reverse nodes':>14} {'forward nodes':>14} {'reverse ms':>11} "
          f"{'forward ms':>11}")
    for r in rows:
        print(f"{r['n']:>5} {r['reverse_nodes']:>14} {r['forward_nodes']:>14} "
              f"{r['reverse_ms']:>11.3f} {r['forward_ms']:>11.3f}")
    return rows


if __name__ == "__main__":
    main()
