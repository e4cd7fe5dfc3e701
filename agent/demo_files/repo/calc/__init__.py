"""A tiny statistics package (the tome demo's repository)."""

from calc.stats import mean, median

__all__ = ["mean", "median"]
