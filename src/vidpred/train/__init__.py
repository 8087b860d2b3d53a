"""Training stages. ``loop`` is the one shared training loop (checkpoint, resume, progress, MLflow);
each other module is a stage with a ``main(config, overrides)`` entry used by ``vidpred train <stage>``."""
