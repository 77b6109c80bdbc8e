"""Counter-based randomness: `sg.random.uniform(shape, seed)` and the default step counter."""

from symgraph.composites import default_step, uniform

__all__ = ["default_step", "uniform"]
