"""The Keras-format progress bar: redraws with \\r, ETA, time per step, value formats."""

import io

from symgraph.nn.progbar import Progbar, format_per_step, format_value


def test_value_and_time_formats():
    assert format_value(0.28934) == "0.2893"
    assert format_value(0.000123) == "1.2300e-04"
    assert format_per_step(0.003) == "3ms/step" and format_per_step(2e-5) == "20us/step"
    assert format_per_step(2.0) == "2s/step"


def test_dynamic_bar_redraws_in_place():
    stream = io.StringIO()
    bar = Progbar(4, verbose=1, stream=stream, dynamic=True, interval=0)
    for i in range(1, 5):
        bar.update(i, {"loss": 1.0 / i})
    bar.finish({"loss": 0.25, "val_loss": 0.5})
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n")
    final = text.split("\r")[-1]
    assert "4/4" in final and "━" in final and "loss: 0.2500 - val_loss: 0.5000" in final


def test_non_terminal_and_verbose_2_write_one_line():
    stream = io.StringIO()
    bar = Progbar(3, verbose=1, stream=stream, dynamic=False)
    bar.update(1, {"loss": 1.0})
    bar.finish({"loss": 0.5})
    assert stream.getvalue().count("\n") == 1 and "\r" not in stream.getvalue()
    stream = io.StringIO()
    Progbar(3, verbose=2, stream=stream).finish({"accuracy": 0.9})
    assert stream.getvalue().startswith("3/3 - 0s - ") and "accuracy: 0.9000" in stream.getvalue()
