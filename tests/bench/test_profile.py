"""The profile suite's timing runner and its table (the Numba compile itself is not run here)."""

from types import SimpleNamespace

from symgraph.bench import report
from symgraph.bench.profile import TimedRunner, profile_table


def test_timed_runner_runs_kernels_in_program_order_and_times_each():
    program = SimpleNamespace(kernels=[SimpleNamespace(id=i) for i in (3, 1, 2)])
    runner = TimedRunner(program)
    seen = []
    runner.run(seen.append)
    runner.run(seen.append)
    assert seen == [3, 1, 2, 3, 1, 2]
    assert set(runner.seconds) == {1, 2, 3} and all(s >= 0 for s in runner.seconds.values())


def test_profile_table_shares_add_up_and_errors_are_reported():
    p = {"step_s": 0.010, "kernels_s": 0.008, "dispatch_and_driver_s": 0.002, "n_kernels": 2,
         "by_kind": {"matmul": {"seconds": 0.006, "kernels": 1, "flops": 6e7},
                     "elementwise": {"seconds": 0.002, "kernels": 1, "flops": 0.0}},
         "top": [{"kernel": 0, "kind": "matmul", "ops": "matmul+add", "seconds": 0.006,
                  "flops": 6e7}]}
    doc = {"profile": {"M1": p, "M2": {"error": "TypingError: nope"}}}
    rows = profile_table(doc)[1:]
    shares = {r[1]: r[3] for r in rows}
    assert shares["matmul (1 kernels)"] == "60%" and shares["elementwise (1 kernels)"] == "20%"
    assert shares["driver dispatch, validation, updates"] == "20%"
    assert rows[1][4] == "10.0"  # 6e7 FLOPs in 6 ms
    assert "profile M2: TypingError: nope" in report.markdown(doc)
