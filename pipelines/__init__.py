"""The vidpred reproduction pipeline (KFP v2): :func:`pipelines.reproduce.build_pipeline`."""

from pipelines.reproduce import build_pipeline, request_gpu

__all__ = ["build_pipeline", "request_gpu"]
