"""Keypoint protocols (landmarks paper Tab. 1): linear regression without intercept from landmark means to
annotated keypoints, fitted on ``fit_split`` frames, scored on ``split`` frames.

The threshold is the protocol's ``threshold_px`` at ``threshold_at`` pixels, scaled to the store's frame height
(6 px at 128 px is 3 px at 64 px). Output folder and MLflow run as for prediction protocols (docs/CONTRACTS.md);
the per-frame unit here is an evaluated image, so ``per_frame`` is null and the interval is a bootstrap over
frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_dir


def evaluate_keypoints_protocol(store, track: str, protocol, model, out_dir: Path, *, log_mlflow: bool = False,
                                parent_run_id: str | None = None, data_md5: str | None = None):
    from vidpred.evaluate.benchmark import FORMAT, N_BOOT, EvalResult, check_store, log_evaluation
    from vidpred.evaluate.predictors import _find, resolve_model
    from vidpred.metrics.keypoints import centre, fit_regressor, predict
    from vidpred.metrics.stats import bootstrap_ci
    from vidpred.train.landmarks import _frames_with_centres, landmark_pixels, load_autoencoder

    check_store(store, protocol)
    if not model:
        raise VidpredError(f"protocol {protocol.name} scores a landmark model: give --model (landmarks.pt or its folder)")
    path = _find(resolve_model(model), "landmarks.pt", "landmark model", "train it with `vidpred train landmarks`")
    net = load_autoencoder(path)
    fit = _frames_with_centres(store, protocol.fit_split, protocol.max_frames, protocol.clip_seed)
    test = _frames_with_centres(store, protocol.split, protocol.max_frames, protocol.clip_seed + 1)
    if fit is None or test is None:
        raise VidpredError(f"store {store.root} has no keypoint ground truth (centers) in splits "
                           f"'{protocol.fit_split}' and '{protocol.split}'")
    (f_fit, k_fit), (f_test, k_test) = fit, test
    h, w = f_fit.shape[1:3]
    threshold = protocol.threshold_px * (h / protocol.threshold_at if protocol.threshold_at else 1.0)
    weights = fit_regressor(centre(landmark_pixels(net, f_fit), h, w), centre(k_fit, h, w))
    pred = predict(weights, centre(landmark_pixels(net, f_test), h, w))
    err = np.linalg.norm(pred - centre(k_test, h, w), axis=-1)  # frames × keypoints
    per_frame_acc, per_frame_err = (err <= threshold).mean(1), err.mean(1)
    metrics = {}
    for name, values, higher, unit in (("keypoint_acc", per_frame_acc, True, "fraction"),
                                       ("keypoint_err_px", per_frame_err, False, "px")):
        if name in protocol.metrics:
            lo, hi = bootstrap_ci(values, n_boot=N_BOOT)
            metrics[name] = {"mean": float(values.mean()), "ci95": [lo, hi], "per_frame": None,
                             "per_frame_ci95": None, "higher_is_better": higher, "unit": unit, "stand_in": False}
    summary = {
        "format": FORMAT, "track": track, "method": "landmarks", "predictor": f"landmarks ({path})",
        "protocol": protocol.name, "protocol_spec": protocol.to_dict(), "provenance": protocol.provenance,
        "model": str(model), "store": str(Path(store.root).resolve()), "data_md5": data_md5, "split": protocol.split,
        "context": 0, "horizon": 0, "samples": 1, "best_of": "single", "num_clips": int(len(f_test)),
        "clips": [], "frames": [], "metrics": metrics, "unavailable": {}, "weights": {}, "stand_in": False,
        "caveats": [f"threshold {threshold:g} px at {h} px ({protocol.threshold_px:g} px at {protocol.threshold_at} px); "
                    f"regression fitted on {len(f_fit)} '{protocol.fit_split}' frames, scored on {len(f_test)} "
                    f"'{protocol.split}' frames"],
        "images": {},
    }
    with atomic_dir(out_dir) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        with open(tmp / "per_clip.csv", "w") as fh:
            fh.write("frame,keypoint_acc,keypoint_err_px\n")
            for i, (a, e) in enumerate(zip(per_frame_acc, per_frame_err)):
                fh.write(f"{i},{float(a)!r},{float(e)!r}\n")
    run_id = log_evaluation(summary, Path(out_dir), parent_run_id) if log_mlflow else None
    return EvalResult(Path(out_dir), summary, run_id)
