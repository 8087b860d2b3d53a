"""KFP v2 lightweight components of the reproduction pipeline: one file per stage group.

Components are thin: typed parameters, artifact paths, a nested MLflow run (``vidpred.orchestrate.stage``);
the work is done by ``vidpred`` functions, which are importable and testable without KFP. Each component
is built for the default image (:data:`components.common.DEFAULT_IMAGE`); the pipeline rebuilds it for the
profile's ``pipeline.base_image`` with :func:`components.common.with_image`.
"""

from components.data import decide_training, prepare_data, validate_data
from components.preprocess import preprocess_moso

__all__ = ["decide_training", "prepare_data", "validate_data", "preprocess_moso"]
