"""The rewrite engine and pattern helpers shared by the rule-based passes."""

from collections import Counter

import numpy as np

import symgraph as sg
from symgraph.passes import rewrite as rw
from symgraph.passes.pipeline import optimize


def test_rule_that_changes_type_is_refused():
    x = sg.placeholder((3, 4), "float64")
    fired = Counter()
    out = rw.rewrite_once([sg.tanh(x)], lambda n: (sg.sum(n), "bad") if n.op == "tanh" else None,
                          fired)
    assert out[0].op == "tanh" and fired == {"rejected:bad": 1}


def test_sweeps_repeat_until_nothing_fires():
    # a firing may build inner nodes that other rules match; the sweep that built them has
    # already passed their position, so the next sweep rewrites them
    x = sg.placeholder((2,), "float64")

    def rules(state):
        def rule(node):
            if node.op == "exp" and not state:
                state.append(1)
                return rw.build("exp", (sg.negative(sg.negative(x)),), node), "wrap"
            if node.op == "neg" and node.inputs[0].op == "neg":
                return node.inputs[0].inputs[0], "neg_neg"
            return None
        return rule

    (out,), fired = rw.rewrite([sg.exp(x)], rules([]), max_rounds=1)
    assert fired == {"wrap": 1} and out.inputs[0].op == "neg"
    (out,), fired = rw.rewrite([sg.exp(x)], rules([]), max_rounds=4)
    assert fired == {"wrap": 1, "neg_neg": 1} and out.inputs[0] is x


def test_rule_table_tries_rules_in_order():
    x = sg.placeholder((2,), "float64")
    first = lambda n: (n.inputs[0], "first")  # noqa: E731
    second = lambda n: (n.inputs[0], "second")  # noqa: E731
    (out,), fired = rw.rewrite([sg.negative(x)], rw.rule_table({"neg": [first, second]}))
    assert out is x and fired == {"first": 1}


def test_uniform_value_sees_through_broadcast_and_reshape():
    zeros = sg.broadcast_to(sg.reshape(sg.constant(np.zeros(1)), ()), (3, 2))
    assert rw.is_value(zeros, 0) and not rw.is_value(zeros, 1)
    assert rw.uniform_value(sg.constant(np.array([1.0, 2.0]))) is None
    assert rw.uniform_value(sg.constant(np.array([np.nan, np.nan]))) is None
    assert rw.uniform_value(sg.placeholder((2,), "float64")) is None


def test_fit_broadcasts_or_refuses():
    x = sg.placeholder((4,), "float64")
    like = sg.placeholder((3, 4), "float64")
    assert rw.fit(x, like).shape == (3, 4)
    assert rw.fit(x, sg.placeholder((3, 5), "float64")) is None
    assert rw.fit(x, sg.placeholder((3, 4), "float32")) is None


def test_order_is_reused_once_and_released_after_optimize():
    x = sg.placeholder((2,), "float64")
    outs = [sg.exp(x) + 1.0]
    first = rw.ordered(outs)
    assert rw.ordered(outs) is first
    assert rw.ordered([sg.exp(x)]) is not first
    optimize(outs, level=2)
    assert rw._last_order == []  # the pipeline does not keep a graph alive
