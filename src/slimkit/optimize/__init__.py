"""``slimkit optimize``: a YAML recipe → baseline, candidates, search → a Pareto report."""

from slimkit.optimize.pipeline import optimize
from slimkit.optimize.recipe import Recipe

__all__ = ["Recipe", "optimize"]
