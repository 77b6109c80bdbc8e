"""Counter-based randomness: `sg.random.uniform(shape, seed)`, `sg.random.normal(shape, seed)`
and the default step counter."""

from symgraph.composites import default_step, normal, uniform

__all__ = ["default_step", "normal", "uniform"]
