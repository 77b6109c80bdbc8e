"""The compile report: what each pass did, and what lowering and the backend add later.

`optimize` fills `passes` (one `PassStats` per pass run); lowering (lower.py) and the backends
fill the remaining fields (kernels, buffers, peak bytes, schedule, cost estimates, a free-form
`backend` dict). A field stays None until its stage sets it, and only set fields are printed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class PassStats:
    """One pass run: name, graph size before and after, wall time, and what it did."""

    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    stats: dict = field(default_factory=dict)

    def summary(self, top: int = 4) -> str:
        """The pass's counters as 'key=value' text; zeros left out, breakdowns cut to `top`."""
        parts = []
        for key, value in self.stats.items():
            if value in (0, None, {}, []):
                continue
            if isinstance(value, dict):
                items = sorted(value.items(), key=lambda kv: -kv[1])
                shown = " ".join(f"{k}:{v}" for k, v in items[:top])
                more = f" +{len(items) - top} more" if len(items) > top else ""
                parts.append(f"{key}=({shown}{more})")
            else:
                parts.append(f"{key}={value}")
        return ", ".join(parts)


# Fields that later stages fill, in print order, with their labels.
_LATER_FIELDS = (("kernels", "kernels"), ("buffers", "buffers"), ("peak_bytes", "peak bytes"),
                 ("naive_peak_bytes", "naive peak bytes"), ("schedule_depth", "schedule depth"),
                 ("schedule_width", "schedule width"), ("flops", "estimated FLOPs"),
                 ("bytes_moved", "estimated bytes moved"))


@dataclass
class CompileReport:
    """Per-pass statistics plus the lowering and backend figures, printable and JSON-able."""

    level: int = 2
    passes: list = field(default_factory=list)
    kernels: int | None = None
    buffers: int | None = None
    peak_bytes: int | None = None
    naive_peak_bytes: int | None = None
    schedule_depth: int | None = None
    schedule_width: int | None = None
    flops: int | None = None
    bytes_moved: int | None = None
    backend: dict = field(default_factory=dict)

    @property
    def nodes_before(self) -> int | None:
        """Graph size before the first pass (None when no pass ran)."""
        return self.passes[0].nodes_before if self.passes else None

    @property
    def nodes_after(self) -> int | None:
        return self.passes[-1].nodes_after if self.passes else None

    @property
    def seconds(self) -> float:
        """Total time spent in passes."""
        return sum(p.seconds for p in self.passes)

    def total(self, counter: str) -> int:
        """A counter summed over every pass run, e.g. total('merges') for all CSE runs."""
        return sum(p.stats.get(counter, 0) or 0 for p in self.passes)

    def pass_named(self, name: str) -> list[PassStats]:
        """Every run of the pass called `name` (CSE runs several times)."""
        return [p for p in self.passes if p.name == name]

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready); unset later-stage fields are kept as None."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "passes"}
        out["passes"] = [asdict(p) for p in self.passes]
        out["nodes_before"] = self.nodes_before
        out["nodes_after"] = self.nodes_after
        out["pass_seconds"] = self.seconds
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def __str__(self) -> str:
        lines = [f"compile report (O{self.level})"]
        if self.passes:
            width = max(len("pass"), *(len(p.name) for p in self.passes))
            lines.append(f"  {'pass':<{width}}  {'before':>7}  {'after':>7}  {'ms':>8}  did")
            for p in self.passes:
                lines.append(f"  {p.name:<{width}}  {p.nodes_before:>7}  {p.nodes_after:>7}  "
                             f"{p.seconds * 1e3:>8.2f}  {p.summary()}")
            lines.append(f"  {'total':<{width}}  {self.nodes_before:>7}  {self.nodes_after:>7}  "
                         f"{self.seconds * 1e3:>8.2f}")
        else:
            lines.append("  no passes run")
        for name, label in _LATER_FIELDS:
            value = getattr(self, name)
            if value is not None:
                lines.append(f"  {label}: {value:,}" if isinstance(value, int)
                             else f"  {label}: {value}")
        for key, value in self.backend.items():
            lines.append(f"  backend {key}: {value}")
        return "\n".join(lines)
