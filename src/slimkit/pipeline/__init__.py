"""The main job: a YAML recipe → baseline, candidates, search → a Pareto report.

``slimkit.optimize(recipe)`` (the same as ``slimkit optimize RECIPE`` on the command line) runs it;
recipe.py checks recipes, optimize.py runs them into a resumable run folder.
"""

from slimkit.pipeline.optimize import optimize
from slimkit.pipeline.recipe import Recipe

__all__ = ["Recipe", "optimize"]
