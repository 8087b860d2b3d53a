"""Training stages. ``loop`` is the one shared training loop (devices, precision, DDP, checkpoints, resume,
progress, MLflow); ``distributed`` runs a stage in several processes under torchrun; each other module is a
stage with a ``main(config, overrides)`` entry used by ``vidpred train <stage>``."""
