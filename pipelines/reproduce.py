"""The reproduction pipeline: data → validation gate → MOSO preprocessing, and the training stages.

Training stages come from the profile's ``stages`` section — one entry per stage (``corrwise``, ``toycar``, …)
with the stage's ``config`` (a file under ``configs/``) and ``overrides`` (``key=value`` strings); a stage
that is absent or has ``enabled: false`` is left out. A training stage with an ``evaluate`` section
(``protocol`` of ``configs/protocols.yaml``, ``track`` name, ``baselines``, ``overrides``, ``device``) is followed
by an ``evaluate_<track>`` task that scores its model and the baselines on the protocol's held-out clips; after
all of them, ``make_report`` writes the run's report (``report.enabled: false`` leaves it out).

:func:`build_pipeline` turns a profile config (``configs/<profile>/pipeline.yaml``) into a ``@dsl.pipeline``
function. Profile values are compiled into the tasks' arguments; only what changes per run is a pipeline
parameter: ``tracking_uri`` (empty: the stage's own default, e.g. the cluster's ``MLFLOW_TRACKING_URI``)
and ``parent_run_id`` (the MLflow parent run the stages nest under). The pipeline's output is the data md5.

Per task, :func:`configure` applies from the profile
* ``resources.<task>`` (else ``resources.default``): ``cpu_request``, ``cpu_limit``, ``memory_request``,
  ``memory_limit`` (Kubernetes quantities such as ``"2"``, ``"500m"``, ``"4G"``);
* ``gpu`` when the task is listed in ``gpu.stages`` (:func:`request_gpu`);
* ``pipeline.env``: environment variables for every task.
Resources, accelerators, tolerations and node selectors are ignored by ``kfp.local`` but compile into the
YAML (the last two into the PlatformSpec, the YAML's second document).

Adding a stage: a component in ``components/``, then in ``reproduce`` one call plus ``configure(...)``.
(No ``from __future__ import annotations`` here: kfp reads the pipeline's type annotations at run time.)
"""

import json
from typing import Any, Mapping

from kfp import dsl, kubernetes

from components import preprocess_moso, prepare_data, validate_data
from components.corrwise import toycar_experiment, train_corrwise
from components.evaluate import evaluate_track, make_report
from components.landmarks import train_landmark_dynamics, train_landmarks
from components.moso import moso_tokens, train_moso_transformer, train_moso_vqvae
from vidpred.config import load_config
from components.common import with_image
from vidpred.errors import VidpredError

# training stage → the vidpred.evaluate method that scores its model
EVALUATED_METHOD = {"corrwise": "corrwise", "moso_transformer": "moso", "landmarks": "landmarks",
                    "landmark_dynamics": "landmarks"}

RESOURCE_SETTERS = {
    "cpu_request": "set_cpu_request",
    "cpu_limit": "set_cpu_limit",
    "memory_request": "set_memory_request",
    "memory_limit": "set_memory_limit",
}


def _plain(cfg_section: Any) -> dict:
    if cfg_section is None:
        return {}
    values = cfg_section if isinstance(cfg_section, Mapping) else getattr(cfg_section, "values", cfg_section)
    if not isinstance(values, Mapping):
        raise VidpredError(f"expected a mapping, got {type(values).__name__}: {values!r}")
    return dict(values)


def request_gpu(task: dsl.PipelineTask, gpu_cfg: Mapping | Any) -> dsl.PipelineTask:
    """Schedule ``task`` on a GPU node from config keys.

    ``type`` (e.g. ``nvidia.com/gpu``) and ``count`` → accelerator type and limit; ``toleration``
    {``key``, ``operator`` (default Equal, or Exists), ``value``, ``effect``} → a pod toleration;
    ``node_selector`` {``label``, ``value``} → a node selector. Missing optional parts are skipped.
    """
    gpu = _plain(gpu_cfg)
    gpu_type, count = gpu.get("type"), gpu.get("count", 1)
    if not gpu_type or not isinstance(gpu_type, str):
        raise VidpredError(f"gpu.type must name an accelerator (e.g. nvidia.com/gpu), got {gpu_type!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise VidpredError(f"gpu.count must be an integer ≥ 1, got {count!r}")
    task.set_accelerator_type(gpu_type)
    task.set_accelerator_limit(count)
    tol = _plain(gpu.get("toleration"))
    if tol:
        operator = tol.get("operator") or ("Equal" if tol.get("value") is not None else "Exists")
        if operator not in ("Equal", "Exists"):
            raise VidpredError(f"gpu.toleration.operator must be Equal or Exists, got {operator!r}")
        effect = tol.get("effect")
        if effect not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise VidpredError("gpu.toleration.effect must be NoSchedule, PreferNoSchedule or NoExecute, "
                               f"got {effect!r}")
        kubernetes.add_toleration(task, key=tol.get("key"), operator=operator,
                                  value=None if operator == "Exists" else str(tol.get("value")), effect=effect)
    sel = _plain(gpu.get("node_selector"))
    if sel:
        if not sel.get("label") or sel.get("value") is None:
            raise VidpredError(f"gpu.node_selector needs 'label' and 'value', got {sel!r}")
        kubernetes.add_node_selector(task, label_key=str(sel["label"]), label_value=str(sel["value"]))
    return task


def configure(task: dsl.PipelineTask, cfg, name: str) -> dsl.PipelineTask:
    """Resources, GPU scheduling and environment of task ``name`` from the profile (see the module doc)."""
    where = f"resources.{name}" if cfg.get(f"resources.{name}", None) else "resources.default"
    for key, value in _plain(cfg.get(where, None)).items():
        if key not in RESOURCE_SETTERS:
            raise VidpredError(f"{where}.{key}: unknown setting (known: {', '.join(RESOURCE_SETTERS)})")
        getattr(task, RESOURCE_SETTERS[key])(str(value))
    if name in (cfg.get("gpu.stages", None) or []):
        request_gpu(task, cfg.get("gpu"))
    for key, value in _plain(cfg.get("pipeline.env", None)).items():
        task.set_env_variable(str(key), str(value))
    return task


def check_profile(cfg) -> None:
    """Raise VidpredError (naming the key) when a setting the pipeline needs is missing or has a wrong type."""
    def need(key: str, kind: type | tuple, minimum: float | None = None, optional: bool = False) -> None:
        value = cfg.get(key, None)
        if value is None and optional:
            return
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and minimum is not None:
            ok = value >= minimum
        if not ok:
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            bound = f" ≥ {minimum}" if minimum is not None else ""
            raise VidpredError(f"profile {cfg.path}: '{key}' must be {names}{bound}, got {value!r}")

    need("pipeline.name", str)
    need("pipeline.base_image", str)
    need("data.dataset", str)
    need("data.size", int, 16)
    need("data.clip_len", int, 1)
    need("data.options", dict, optional=True)
    need("validate.clip_len", int, 0, optional=True)
    need("preprocess.clip_len", int, 0, optional=True)
    need("preprocess.lower", (int, float), 0)
    need("preprocess.upper", (int, float), 0)
    need("gpu.stages", list, optional=True)
    need("stages", dict, optional=True)
    for name, section in (cfg.get("stages", None) or {}).items():
        if not isinstance(section, dict):
            raise VidpredError(f"profile {cfg.path}: 'stages.{name}' must be a mapping, got {section!r}")
        need(f"stages.{name}.overrides", list, optional=True)
        ev = section.get("evaluate")
        if ev is None:
            continue
        if name not in EVALUATED_METHOD:
            raise VidpredError(f"profile {cfg.path}: 'stages.{name}.evaluate': stage {name} has no evaluation "
                               f"(evaluated stages: {', '.join(EVALUATED_METHOD)})")
        need(f"stages.{name}.evaluate", dict)
        need(f"stages.{name}.evaluate.protocol", str)
        need(f"stages.{name}.evaluate.track", str, optional=True)
        need(f"stages.{name}.evaluate.baselines", list, optional=True)
        need(f"stages.{name}.evaluate.overrides", list, optional=True)
        unknown = sorted(set(ev) - {"protocol", "track", "baselines", "overrides", "device"})
        if unknown:
            raise VidpredError(f"profile {cfg.path}: 'stages.{name}.evaluate': unknown key(s) {', '.join(unknown)}")
        from vidpred.evaluate.predictors import BASELINES
        from vidpred.evaluate.protocols import get_protocol

        get_protocol(ev["protocol"], [str(o) for o in ev.get("overrides", [])])  # unknown protocol/key: error now
        bad = [b for b in ev.get("baselines", []) if b not in BASELINES]
        if bad:
            raise VidpredError(f"profile {cfg.path}: 'stages.{name}.evaluate.baselines': unknown {bad} "
                               f"(known: {', '.join(BASELINES)})")


def build_pipeline(cfg):
    """The ``@dsl.pipeline`` function of a profile config (a ``vidpred.config.Config``)."""
    check_profile(cfg)
    image = cfg["pipeline.base_image"]
    prepare_op = with_image(prepare_data, image)
    validate_op = with_image(validate_data, image)
    moso_op = with_image(preprocess_moso, image)
    corrwise_op = with_image(train_corrwise, image)
    toycar_op = with_image(toycar_experiment, image)
    landmarks_op = with_image(train_landmarks, image)
    dynamics_op = with_image(train_landmark_dynamics, image)
    vqvae_op, tokens_op = with_image(train_moso_vqvae, image), with_image(moso_tokens, image)
    transformer_op = with_image(train_moso_transformer, image)
    evaluate_op, report_op = with_image(evaluate_track, image), with_image(make_report, image)
    options = json.dumps(_plain(cfg.get("data.options", None)), sort_keys=True)

    def stage(name: str) -> dict:
        """The profile's ``stages.<name>`` section; empty (stage left out) if absent or enabled: false."""
        section = _plain(cfg.get(f"stages.{name}", None))
        return section if section and section.get("enabled", True) else {}

    def overrides(name: str) -> list:
        return [str(o) for o in stage(name).get("overrides", [])]

    def evaluate(evaluations: list, name: str, model, store, md5, run: dict) -> None:
        """The ``evaluate_<track>`` task after training stage ``name`` (if its section asks for one)."""
        ev = _plain(stage(name).get("evaluate"))
        if not ev:
            return
        track = str(ev.get("track", name))
        task = evaluate_op(store=store, model=model, track=track, protocol=ev["protocol"],
                           method=EVALUATED_METHOD[name], baselines=[str(b) for b in ev.get("baselines", [])],
                           overrides=[str(o) for o in ev.get("overrides", [])], device=str(ev.get("device", "auto")),
                           data_md5=md5, **run)
        configure(task, cfg, f"evaluate_{track}").set_display_name(f"evaluate-{track}")
        evaluations.append(task)

    @dsl.pipeline(name=cfg["pipeline.name"], description=cfg.get("pipeline.description", ""))
    def reproduce(tracking_uri: str = "", parent_run_id: str = "") -> str:
        run = {"tracking_uri": tracking_uri, "parent_run_id": parent_run_id}
        evaluations: list = []  # evaluate_<track> tasks; the report runs after all of them

        prep = prepare_op(dataset=cfg["data.dataset"], source=cfg.get("data.source", None) or "",
                          size=cfg["data.size"], clip_len=cfg["data.clip_len"], options_json=options, **run)
        configure(prep, cfg, "prepare_data")
        store, md5 = prep.outputs["store"], prep.outputs["data_md5"]

        gate = validate_op(store=store, clip_len=cfg.get("validate.clip_len", 0) or 0, data_md5=md5, **run)
        configure(gate, cfg, "validate_data")

        moso = moso_op(store=store, clip_len=cfg.get("preprocess.clip_len", 0) or 0, data_md5=md5,
                       lower=float(cfg["preprocess.lower"]), upper=float(cfg["preprocess.upper"]), **run)
        configure(moso, cfg, "preprocess_moso").after(gate)  # nothing downstream of a failed gate runs

        if stage("moso_vqvae"):  # MOSO: VQVAE on the decomposed clips → tokens → Transformer
            moso_store = moso.outputs["moso"]
            vq = vqvae_op(config=stage("moso_vqvae")["config"], moso=moso_store, data_md5=md5,
                          overrides=overrides("moso_vqvae"), **run)
            configure(vq, cfg, "train_moso_vqvae")
            if stage("moso_transformer"):
                # the context length belongs to the VQVAE config (it fixes the pseudo clip's aligned pools)
                context = int(load_config(stage("moso_vqvae")["config"], overrides("moso_vqvae"))["tokens.context"])
                tok = tokens_op(moso=moso_store, vqvae=vq.outputs["model"], context=context, data_md5=md5, **run)
                configure(tok, cfg, "moso_tokens")
                tr = transformer_op(config=stage("moso_transformer")["config"], moso=moso_store,
                                    vqvae=vq.outputs["model"], tokens=tok.outputs["tokens"], data_md5=md5,
                                    overrides=overrides("moso_transformer"), **run)
                configure(tr, cfg, "train_moso_transformer")
                evaluate(evaluations, "moso_transformer", tr.outputs["model"], store, md5, run)

        if stage("corrwise"):  # CorrWise predictor on the clip store
            corr = corrwise_op(config=stage("corrwise")["config"], store=store, data_md5=md5,
                               overrides=overrides("corrwise"), **run)
            configure(corr, cfg, "train_corrwise").after(gate)
            evaluate(evaluations, "corrwise", corr.outputs["model"], store, md5, run)
        if stage("toycar"):  # CorrWise Fig. 2: needs no dataset
            toy = toycar_op(loss=stage("toycar").get("loss", "l1"), mode=stage("toycar").get("mode", "corrwise"),
                            overrides=overrides("toycar"), **run)
            configure(toy, cfg, "toycar_experiment")

        if stage("landmarks"):  # unsupervised landmarks: autoencoder, then the LSTM dynamics on top
            lm = landmarks_op(config=stage("landmarks")["config"], store=store, data_md5=md5,
                              overrides=overrides("landmarks"), **run)
            configure(lm, cfg, "train_landmarks").after(gate)
            evaluate(evaluations, "landmarks", lm.outputs["model"], store, md5, run)
            if stage("landmark_dynamics"):
                dyn = dynamics_op(config=stage("landmark_dynamics")["config"], store=store,
                                  landmarks=lm.outputs["model"], data_md5=md5,
                                  overrides=overrides("landmark_dynamics"), **run)
                configure(dyn, cfg, "train_landmark_dynamics")
                evaluate(evaluations, "landmark_dynamics", dyn.outputs["model"], store, md5, run)

        if evaluations and cfg.get("report.enabled", True):  # one report of the run, after every evaluation
            rep = report_op(data_md5=md5, **run)
            configure(rep, cfg, "make_report").after(*evaluations)

        return md5

    return reproduce
