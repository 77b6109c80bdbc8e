"""Keras's progress bar format, written here (no dependency):

    Epoch 3/10
    469/469 ━━━━━━━━━━━━━━━━━━━━ 12s 26ms/step - accuracy: 0.9120 - loss: 0.2893

verbose=1 redraws one line in place with `\\r` (ETA while running, total seconds when done);
when the output is not a terminal it writes the finished line only. verbose=2 writes
`469/469 - 12s - 26ms/step - loss: ...` once per epoch.
"""

from __future__ import annotations

import sys
import time

WIDTH = 20
BOLD, GREEN, GREY, RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"


def format_value(v: float) -> str:
    """4 decimals, or scientific when |v| < 1e-3 (Keras's rule)."""
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"


def format_per_step(seconds: float, unit: str = "step") -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def format_eta(seconds: float) -> str:
    if seconds >= 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds >= 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return f"{int(seconds)}s"


class Progbar:
    """One epoch's bar: `update(step, values)` after each batch, `finish(values)` at the end."""

    def __init__(self, target: int | None, verbose: int = 1, stream=None,
                 dynamic: bool | None = None, interval: float = 0.05, unit: str = "step"):
        # target None: the number of steps is unknown (a generator): "12/Unknown", no bar
        self.target = None if target is None else int(target)
        self.verbose, self.unit, self.seen = verbose, unit, 0
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.dynamic = isatty if dynamic is None else dynamic
        self.interval = interval
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._width = 0

    def _line(self, current: int, values: dict, done: bool) -> str:
        now = time.perf_counter()
        elapsed = now - self.start
        per_step = elapsed / max(current, 1)
        metrics = "".join(f" - {k}: {format_value(float(v))}" for k, v in values.items())
        if self.target is None:
            count = f"{current:7d}/Unknown"
        else:
            count = f"{current:>{len(str(self.target))}}/{self.target}"
        if self.verbose == 2:
            return f"{count} - {int(elapsed)}s - {format_per_step(per_step, self.unit)}{metrics}"
        if self.target is None:
            when = f"{int(elapsed)}s"
            return f"{count} {when} {format_per_step(per_step, self.unit)}{metrics}"
        filled = int(WIDTH * current / max(self.target, 1))
        if self.dynamic:
            bar = f"{BOLD}{count}{RESET} {GREEN}{'━' * filled}{RESET}" \
                  f"{GREY}{'━' * (WIDTH - filled)}{RESET}"
        else:
            bar = f"{count} {'━' * filled}{' ' * 0}{'━' * (WIDTH - filled)}"
        when = f"{int(elapsed)}s" if done else format_eta(per_step * (self.target - current))
        if self.dynamic and not done:
            when = f"{BOLD}{when}{RESET}"
        return f"{bar} {when} {format_per_step(per_step, self.unit)}{metrics}"

    def update(self, current: int, values: dict) -> None:
        """Redraw (verbose=1 on a terminal, at most every `interval` seconds)."""
        self.seen = current
        if self.verbose != 1 or not self.dynamic:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.interval and current < (self.target or current + 1):
            return
        self._last_draw = now
        self._draw(self._line(current, values, done=False))

    def _draw(self, line: str) -> None:
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self._width = len(line)
        self.stream.flush()

    def finish(self, values: dict) -> None:
        """The final line of the epoch, with the end-of-epoch values (validation included)."""
        if self.verbose not in (1, 2):
            return
        line = self._line(self.seen if self.target is None else self.target, values, done=True)
        if self.verbose == 1 and self.dynamic:
            self._draw(line)
            self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
