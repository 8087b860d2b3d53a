"""vidpred: three video-prediction papers as one reproducible, orchestrated pipeline."""

__version__ = "0.1.0"
