"""Stabilization: at logits of +-1e4 the naive graphs overflow; the optimized ones are exact."""

import numpy as np
import scipy.special

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.passes.stabilize import stabilize

EXTREME = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4 + 1.0, 2.0, 1e4 - 5.0],
                    [0.1, 0.2, 0.3, 0.4]])


def _run(inputs, expr, arrays, level):
    return sg.function(inputs, expr, optimize=level)(*arrays)


def _rules(expr):
    opt, report = sg.optimize(expr, level=2)
    return opt, report.pass_named("stabilize")[0].stats["rules"]


def test_naive_log_softmax_is_stabilized():
    x = sg.placeholder((3, 4), "float64")
    e = sg.exp(x)
    naive = sg.log(e / sg.sum(e, axis=1, keepdims=True))
    expected = scipy.special.log_softmax(EXTREME, axis=1)
    with np.errstate(all="ignore"):
        broken = _run([x], naive, [EXTREME], 0)
    assert not np.isfinite(broken).all()  # exp(1e4) = inf: the naive graph overflows
    _, rules = _rules(naive)
    assert rules == {"log_softmax": 1}
    np.testing.assert_allclose(_run([x], naive, [EXTREME], 2), expected, rtol=1e-12)


def test_log_of_softmax_composite_and_cross_entropy():
    x = sg.placeholder((3, 4), "float64")
    t = sg.placeholder((3, 4), "float64")
    logp = sg.log(sg.softmax(x, axis=-1))
    ce = -sg.sum(t * logp, axis=-1)
    targets = np.eye(4)[[1, 0, 3]]
    with np.errstate(all="ignore"):
        broken = _run([x, t], [logp, ce], [EXTREME, targets], 0)
    assert np.isinf(broken[0]).any() and not np.isfinite(broken[1]).all()  # softmax underflows
    opt, rules = _rules([logp, ce])
    assert rules == {"log_softmax": 1}
    got = _run([x, t], [logp, ce], [EXTREME, targets], 2)
    want = scipy.special.log_softmax(EXTREME, axis=1)
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    np.testing.assert_allclose(got[1], -(targets * want).sum(axis=1), rtol=1e-12)
    # the composite's own max shift is re-used: no second max is built
    assert sum(n.op == "max" for n in topo_order(opt)) == 1


def test_log_one_plus_and_expm1():
    x = sg.placeholder((5,), "float64")
    tiny = np.array([1e-20, -1e-18, 3e-17, 0.5, -0.25])
    for naive, rule, want in [(sg.log(1.0 + x), "log1p", np.log1p(tiny)),
                              (sg.log(x + 1.0), "log1p", np.log1p(tiny)),
                              (sg.log(1.0 - x), "log_one_minus", np.log1p(-tiny)),
                              (sg.exp(x) - 1.0, "expm1", np.expm1(tiny))]:
        assert _run([x], naive, [tiny], 0)[0] == 0.0  # 1 + 1e-20 == 1: the naive form loses it
        _, rules = _rules(naive)
        assert rules == {rule: 1}
        np.testing.assert_allclose(_run([x], naive, [tiny], 2), want, rtol=1e-15)


def test_log_sigmoid_and_binary_cross_entropy():
    x = sg.placeholder((6,), "float64")
    t = sg.placeholder((6,), "float64")
    xs = np.array([1e4, -1e4, 0.0, 30.0, -800.0, 1.5])
    ts = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.5])
    p = sg.sigmoid(x)
    bce = -(t * sg.log(p) + (1.0 - t) * sg.log(1.0 - p))
    with np.errstate(all="ignore"):
        assert not np.isfinite(_run([x, t], bce, [xs, ts], 0)).all()
    _, rules = _rules(bce)
    assert rules == {"log_sigmoid": 1, "log_one_minus_sigmoid": 1}
    want = np.logaddexp(0, xs) - ts * xs  # softplus(x) - t*x
    np.testing.assert_allclose(_run([x, t], bce, [xs, ts], 2), want, rtol=1e-12)


def test_naive_softplus_and_log_exp():
    x = sg.placeholder((4,), "float64")
    xs = np.array([1e4, -1e4, 0.0, 2.0])
    naive = sg.log(1.0 + sg.exp(x))
    _, rules = _rules(naive)
    assert rules == {"log1p": 1, "softplus": 1}
    np.testing.assert_allclose(_run([x], naive, [xs], 2), np.logaddexp(0, xs), rtol=1e-15)
    np.testing.assert_array_equal(_run([x], sg.log(sg.exp(x)), [xs], 2), xs)


def test_stable_forms_are_left_alone():
    x = sg.placeholder((3, 4), "float64")
    stable = [sg.log_softmax(x), sg.softplus(x), sg.log1p(x * x), sg.logsumexp(x)]
    outs, stats = stabilize(stable)
    assert stats["rewrites"] == 0 and all(a is b for a, b in zip(outs, stable))


def test_gradient_of_stabilized_graph_matches_reference():
    # the forward is rewritten; the backward (built before the passes) must be unaffected
    x = sg.placeholder((2, 3), "float64")
    loss = sg.sum(sg.log(1.0 + sg.sigmoid(x)) + sg.log(sg.sigmoid(x)))
    g = sg.grad(loss, x)
    xs = np.random.default_rng(0).normal(size=(2, 3))
    want = _run([x], [loss, g], [xs], 0)
    got = _run([x], [loss, g], [xs], 2)
    for w, v in zip(want, got):
        np.testing.assert_allclose(v, w, rtol=1e-12)


def test_division_by_a_differently_laid_out_sum_is_not_softmax():
    # column sums reshaped into a column: row i divided by column-sum i, which is no softmax
    x = sg.placeholder((3, 3), "float64")
    e = sg.exp(x)
    odd = sg.log(e / sg.reshape(sg.sum(e, axis=0), (3, 1)))
    keep = sg.log(e / sg.reshape(sg.sum(e, axis=1), (3, 1)))  # row sums: a real softmax
    outs, stats = stabilize([odd, keep])
    assert stats["rules"] == {"log_softmax": 1}
    xs = np.arange(9.0).reshape(3, 3) / 4
    got = _run([x], [odd, keep], [xs], 2)
    np.testing.assert_allclose(got[0], np.log(np.exp(xs) / np.exp(xs).sum(0)[:, None]))
    np.testing.assert_allclose(got[1], scipy.special.log_softmax(xs, axis=1))


def test_naive_logsumexp_and_norm():
    x = sg.placeholder((3, 4), "float64")
    for keepdims in (False, True):
        naive = sg.log(sg.sum(sg.exp(x), axis=1, keepdims=keepdims))
        with np.errstate(all="ignore"):
            assert not np.isfinite(_run([x], naive, [EXTREME], 0)).all()
        _, rules = _rules(naive)
        assert rules == {"log_sum_exp": 1}
        want = scipy.special.logsumexp(EXTREME, axis=1, keepdims=keepdims)
        np.testing.assert_allclose(_run([x], naive, [EXTREME], 2), want, rtol=1e-12)
    norm = sg.sqrt(x * x)
    _, rules = _rules(norm)
    assert rules == {"sqrt_square": 1}
    big = EXTREME * 1e300
    np.testing.assert_array_equal(_run([x], norm, [big], 2), np.abs(big))


def _softmax_ce_grad_reference(logits, targets):
    p = scipy.special.softmax(logits, axis=1)
    return p * targets.sum(axis=1, keepdims=True) - targets


def test_gradient_of_naive_log_softmax_is_built_from_the_stable_form():
    x = sg.variable(EXTREME.copy(), name="logits")
    t = sg.placeholder((3, 4), "float64", name="t")
    targets = np.eye(4)[[1, 0, 3]]
    ce = -sg.sum(t * sg.log(sg.softmax(x, axis=-1)))
    g_stable = sg.grad(ce, x)
    g_naive = sg.grad(ce, x, stabilize=False)
    with np.errstate(all="ignore"):
        got, naive = sg.function([t], [g_stable, g_naive], optimize=0)(targets)
    assert not np.isfinite(naive).all()  # 1/softmax of an underflowed probability
    np.testing.assert_allclose(got, _softmax_ce_grad_reference(EXTREME, targets), atol=1e-12)
    # same function: finite differences at ordinary logits, and the Hessian path works too
    from symgraph.testing import verify_grad

    verify_grad(lambda z: -sg.sum(sg.constant(targets) * sg.log(sg.softmax(z, axis=-1))),
                [np.random.default_rng(0).standard_normal((3, 4))])


def test_gradient_with_respect_to_a_rewritten_intermediate_keeps_the_graph_as_written():
    x = sg.placeholder((3, 4), "float64", name="x")
    p = sg.softmax(x, axis=-1)  # log(p) is rewritten to log_softmax(x): p leaves the graph
    cost = sg.sum(sg.log(p))
    g = sg.grad(cost, p)  # so the gradient is taken on the graph as written: 1 / p
    xs = np.random.default_rng(1).standard_normal((3, 4))
    got = sg.function([x], g)(xs)
    np.testing.assert_allclose(got, 1.0 / scipy.special.softmax(xs, axis=1), rtol=1e-12)
