"""Ctrl-C and environment switches (runtime.hold_interrupts, backends/parallel.py,
envvars.py): a KeyboardInterrupt never leaves state half-changed, a pool kernel never writes
after its call failed, a Function reading a variable never sees an in-place update half
done, and a switch with a value symgraph does not know is an error naming it."""

import signal
import threading
import time

import numpy as np
import pytest

import symgraph as sg
from symgraph import envvars
from symgraph.nn import Dense, Sequential


def _interrupt_after(run):
    """`run` followed by a SIGINT delivered while the caller is still inside the call."""
    def wrapped(*args):
        out = run(*args)
        signal.raise_signal(signal.SIGINT)  # the handler runs at the next bytecode
        return out
    return wrapped


def test_ctrl_c_during_an_in_place_step_leaves_every_variable_after_the_step():
    x = sg.placeholder(("n",), "float32", name="x")
    a = sg.variable(np.zeros(1000, np.float32), name="a")  # written in place
    b = sg.variable(np.zeros(1000, np.float32), name="b")  # an output too: swapped in after
    f = sg.function([x], [sg.sum(x), b], updates={a: a + 1, b: b + 1}, backend="numba")
    assert f._writes_in_place
    f._run = _interrupt_after(f._run)
    with pytest.raises(KeyboardInterrupt):
        f(np.ones(3, np.float32))
    np.testing.assert_array_equal(a.value, 1.0)
    np.testing.assert_array_equal(b.value, 1.0)  # it was 0: the interrupt came before the swap


def test_ctrl_c_while_setting_weights_sets_all_of_them():
    model = Sequential([Dense(4, input_dim=3), Dense(2)])
    arrays = [np.full(w.shape, 7, np.float32) for w in model.weights]
    first = model.weights[0]
    assign = type(first)._assign

    def interrupting(var, value):
        assign(var, value)
        if var is first:
            signal.raise_signal(signal.SIGINT)
    type(first)._assign = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            model.set_weights(arrays)
    finally:
        type(first)._assign = assign
    assert all(np.all(w.value == 7) for w in model.weights)


@pytest.mark.parametrize("in_place", ["1", "0"])
def test_an_interrupted_parallel_call_waits_for_its_pool_kernels(monkeypatch, in_place):
    """In place, the Ctrl-C is held until the call is over; otherwise the call raises at once
    but only once no kernel runs on a pool thread (it writes into buffers the failed call
    hands back)."""
    monkeypatch.setenv("SYMGRAPH_INPLACE", in_place)
    x = sg.placeholder(("n", 64), "float32", name="x")
    a = sg.variable(np.zeros(1000, np.float32), name="a")
    f = sg.function([x], sg.sum(sg.tanh(x)), updates={a: a + 1.0}, backend="numba", workers=2)
    compiled = f._run.compiled
    main = threading.main_thread()
    on_pool, done = threading.Event(), threading.Event()

    def interrupting(fn):
        def run(*args):
            if threading.current_thread() is not main:  # Ctrl-C while the caller waits
                on_pool.set()
                signal.pthread_kill(main.ident, signal.SIGINT)
                time.sleep(0.3)  # a long kernel, still running when the interrupt lands
            fn(*args)
            if threading.current_thread() is not main:
                done.set()
        return run
    compiled.kernel_fns = [interrupting(fn) for fn in compiled.kernel_fns]
    for _ in range(20):  # until a pool thread, not the caller, took a kernel
        on_pool.clear()
        done.clear()
        try:
            f(np.ones((8, 64), np.float32))
        except KeyboardInterrupt:
            assert done.is_set()  # the failed call left no kernel running behind it
        if on_pool.is_set():
            break
    else:
        pytest.skip("the caller's thread ran every kernel every time")
    snapshot = a.value.copy()
    time.sleep(0.4)
    np.testing.assert_array_equal(a.value, snapshot)


def test_a_reader_never_sees_an_in_place_update_half_done():
    a = sg.variable(np.zeros(200_000, np.float32), name="a")
    x = sg.placeholder((), "float32", name="x")
    step = sg.function([x], x, updates={a: a + 1}, backend="numba")
    assert step._writes_in_place
    read = sg.function([x], sg.max(a) - sg.min(a) + x, backend="numba")
    stop, spreads = threading.Event(), []

    def writer():
        while not stop.is_set():
            step(np.float32(0))
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            spreads.append(float(read(np.float32(0))))
    finally:
        stop.set()
        thread.join()
    assert max(spreads) == 0.0  # every element read at one step's value


@pytest.mark.parametrize("value, want", [("1", True), ("true", True), ("YES", True),
                                         ("on", True), ("0", False), ("false", False),
                                         ("no", False), ("off", False), ("", False)])
def test_flags_read_the_usual_spellings(monkeypatch, value, want):
    monkeypatch.setenv("SYMGRAPH_TEST_FLAG", value)
    assert envvars.flag("SYMGRAPH_TEST_FLAG") is want


def test_unknown_flag_and_integer_values_are_errors_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SYMGRAPH_TEST_FLAG", "maybe")
    with pytest.raises(sg.SymgraphError, match="SYMGRAPH_TEST_FLAG='maybe'"):
        envvars.flag("SYMGRAPH_TEST_FLAG")
    monkeypatch.setenv("SYMGRAPH_TEST_INT", "two")
    with pytest.raises(sg.SymgraphError, match="SYMGRAPH_TEST_INT='two'"):
        envvars.integer("SYMGRAPH_TEST_INT", 2)
    monkeypatch.setenv("SYMGRAPH_TEST_INT", "3")
    assert envvars.integer("SYMGRAPH_TEST_INT", 2) == 3


def test_switches_are_honoured_in_every_spelling(monkeypatch):
    x = sg.placeholder(("n",), "float32", name="x")
    a = sg.variable(np.zeros(3, np.float32), name="a")
    monkeypatch.setenv("SYMGRAPH_INPLACE", "false")
    monkeypatch.setenv("SYMGRAPH_NUMBA_DRIVER", "yes")
    compiled = sg.function([x], sg.sum(x), updates={a: a + 1}, backend="numba")._run.compiled
    assert compiled.driver and not compiled.inplace
