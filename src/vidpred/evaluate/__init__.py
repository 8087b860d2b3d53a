"""Benchmark evaluation and the reproduction report.

* :mod:`vidpred.evaluate.protocols` — protocols as data (``configs/protocols.yaml``) and the seeded clip choice;
* :mod:`vidpred.evaluate.predictors` — one predictor interface for every trained model and baseline;
* :mod:`vidpred.evaluate.benchmark` — scoring, intervals, output folders, MLflow runs (``vidpred evaluate``);
* :mod:`vidpred.evaluate.keypoints` — keypoint-regression protocols (landmarks);
* :mod:`vidpred.evaluate.plots` — per-frame curves;
* :mod:`vidpred.evaluate.report` — ``report.md`` / ``report.html`` of a pipeline run (``vidpred report``).

Nothing is imported here: the modules pull in torch and MLflow.
"""
