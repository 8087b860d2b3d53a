"""Model registry: one registered model per track, a ``champion`` that moves only when a challenger wins.

Each track's trained model (the LoggedModel its training stage logged, named in the model folder's
``mlflow_model.json``, see :func:`vidpred.tracking.write_model_pointer`) is registered by the track's evaluation
as a new version of ``vidpred-<track>-<method>`` (:func:`model_name`) and gets the alias ``challenger``.
:func:`promote_evaluated` then decides:

* no ``champion`` yet → the new version becomes ``champion`` (the first version of a track);
* otherwise the current champion is scored again by the same evaluation — same store, protocol, clips and seed —
  so a change of data or protocol cannot make an old score look better or worse, and the challenger becomes
  ``champion`` only when it beats it on the track's primary metric by at least ``min_margin`` (direction per
  metric: PSNR, SSIM higher is better; LPIPS, FVD, MSE, L1 lower — ``vidpred.evaluate.benchmark.HIGHER_IS_BETTER``).
  A champion that cannot be scored, or a primary metric that could not be computed, keeps the champion.

A promoted challenger loses the ``challenger`` alias (it is the champion now); a beaten one keeps it, so
``vidpred models list`` shows what is waiting. The decision, both scores, the margin and the reason are tags
``vidpred.promotion.*`` of the new model version and of the evaluation's MLflow run (the scores also as
metrics ``promotion/challenger_<metric>`` and ``promotion/champion_<metric>`` there).

:func:`promote` is the deliberate manual override (``vidpred models promote NAME VERSION``): it moves ``champion``
and records ``vidpred.promotion.decision = manual`` with who, when and why on that version.
"""

from __future__ import annotations

import getpass
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from vidpred.errors import VidpredError

CHAMPION, CHALLENGER = "champion", "challenger"
PREFIX = "vidpred-"
TAG = "vidpred.promotion"  # prefix of the decision tags on model versions and evaluation runs


def model_name(track: str, method: str) -> str:
    """The registered model of a track: ``vidpred-<track>-<method>``."""
    return f"{PREFIX}{track}-{method}"


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (also of ``<metric>_firstN``); VidpredError for a metric without one."""
    from vidpred.evaluate.benchmark import HIGHER_IS_BETTER

    base = metric.split("_first")[0]
    if base not in HIGHER_IS_BETTER:
        raise VidpredError(f"primary metric '{metric}' has no known direction (known: {', '.join(HIGHER_IS_BETTER)})")
    return HIGHER_IS_BETTER[base]


@dataclass(frozen=True)
class PromotionSpec:
    """What the evaluation of a track's model registers and compares (from the profile, vidpred.profile)."""

    track: str
    method: str
    primary_metric: str
    min_margin: float = 0.0

    @property
    def name(self) -> str:
        return model_name(self.track, self.method)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PromotionSpec | None":
        """The spec of the evaluate component's ``promotion`` input; None for an empty string."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            spec = cls(str(raw["track"]), str(raw["method"]), str(raw["primary_metric"]), float(raw.get("min_margin", 0)))
        except (ValueError, KeyError, TypeError):
            raise VidpredError(f"promotion settings are not valid JSON with track, method, primary_metric: {text!r}") \
                from None
        if not (math.isfinite(spec.min_margin) and spec.min_margin >= 0):
            raise VidpredError(f"promotion min_margin must be a number ≥ 0, got {spec.min_margin}")
        higher_is_better(spec.primary_metric)
        return spec


@dataclass
class Decision:
    """The outcome of one registration (or a manual promotion)."""

    name: str
    version: str
    decision: str  # promoted | kept | manual
    reason: str
    metric: str = ""
    challenger_score: float | None = None
    champion_score: float | None = None
    champion_version: str | None = None  # the champion before this decision
    margin: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.decision in ("promoted", "manual")

    def tags(self) -> dict[str, str]:
        def num(x):
            return "" if x is None else repr(float(x))

        tags = {f"{TAG}.decision": self.decision, f"{TAG}.reason": self.reason[:5000], f"{TAG}.metric": self.metric,
                f"{TAG}.challenger_score": num(self.challenger_score), f"{TAG}.champion_score": num(self.champion_score),
                f"{TAG}.champion_version": self.champion_version or "", f"{TAG}.margin": repr(float(self.margin)),
                f"{TAG}.model": self.name, f"{TAG}.version": self.version}
        tags.update({f"{TAG}.{k}": str(v) for k, v in self.extra.items()})
        if self.decision == "manual":  # the version's evaluation (metric, scores, margin) stays as it was logged
            for key in ("metric", "challenger_score", "champion_score", "margin"):
                tags.pop(f"{TAG}.{key}")
        return tags

    def describe(self) -> str:
        verb = {"promoted": "is now champion", "manual": "is now champion (manual override)",
                "kept": f"stays challenger (champion v{self.champion_version})"}[self.decision]
        return f"{self.name} v{self.version} {verb}: {self.reason}"


def decide(metric: str, challenger: float | None, champion: float | None, margin: float) -> tuple[bool, str]:
    """Whether a challenger scoring ``challenger`` replaces a champion scoring ``champion`` on ``metric``, and why."""
    higher = higher_is_better(metric)
    if challenger is None or not math.isfinite(challenger):
        return False, f"the challenger has no {metric} score, so it cannot be shown to be better"
    if champion is None or not math.isfinite(champion):
        return False, f"the champion has no {metric} score on this evaluation, so the challenger cannot be compared"
    gain = challenger - champion if higher else champion - challenger
    way = "higher" if higher else "lower"
    both = f"{metric} {challenger:.6g} vs champion {champion:.6g} ({way} is better)"
    if gain > 0 and gain >= margin:
        return True, f"{both}: better by {gain:.4g} ≥ min_margin {margin:g}"
    if gain > 0:
        return False, f"{both}: better by only {gain:.4g} < min_margin {margin:g}"
    return False, f"{both}: not better"


# ------------------------------------------------------------------------------------------ MLflow access

def _client():
    import mlflow

    from vidpred.tracking import preflight

    uri = preflight()
    mlflow.set_tracking_uri(uri)  # the registry is the tracking store (the global registry URI is left alone)
    return mlflow.MlflowClient(uri, registry_uri=uri)


def _alias_version(client, name: str, alias: str):
    """The model version ``alias`` points to, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _score(summary: dict | None, metric: str) -> float | None:
    entry = ((summary or {}).get("metrics") or {}).get(metric)
    value = entry.get("mean") if isinstance(entry, dict) else None
    return float(value) if value is not None and math.isfinite(float(value)) else None


def register(model_dir: str | Path, spec: PromotionSpec, tags: dict | None = None):
    """Register the LoggedModel of ``model_dir`` as a new version of ``spec.name``; it gets alias ``challenger``."""
    from vidpred.tracking import read_model_pointer

    pointer = read_model_pointer(model_dir)
    if pointer is None:
        raise VidpredError(f"model folder {model_dir} has no mlflow_model.json: its training stage logged no MLflow "
                           f"model, so it cannot be registered as {spec.name}")
    client = _client()
    if not client.search_registered_models(filter_string=f"name = '{spec.name}'"):
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(spec.name, tags={"vidpred.track": spec.track, "vidpred.method": spec.method},
                                           description=f"vidpred track {spec.track}: the {spec.method} model; alias "
                                                       f"'{CHAMPION}' is the model in use, '{CHALLENGER}' the newest "
                                                       "candidate that did not beat it")
        except MlflowException:  # made meanwhile by another process
            pass
    version = client.create_model_version(spec.name, source=pointer["model_uri"], run_id=pointer.get("run_id"),
                                          model_id=pointer["model_id"], tags={
                                              "vidpred.track": spec.track, "vidpred.method": spec.method,
                                              **(tags or {})})
    client.set_registered_model_alias(spec.name, CHALLENGER, version.version)
    return version


def promote_evaluated(model_dir: str | Path, spec: PromotionSpec, summary: dict,
                      score_champion: Callable[[str], dict], evaluation_run_id: str | None = None) -> Decision:
    """Register the evaluated model, compare it with the champion and move the aliases (see the module doc).

    ``summary``: the challenger's ``metrics.json`` document; ``score_champion(model_uri)``: the same evaluation of
    another model (its summary), called only when there is a champion."""
    client = _client()
    done = _decided(client, model_dir, spec)
    if done is not None:  # a retried evaluation task: the model was registered and decided before
        return done
    champion = _alias_version(client, spec.name, CHAMPION)
    version = register(model_dir, spec, tags={"vidpred.protocol": summary.get("protocol", ""),
                                               "vidpred.data_md5": summary.get("data_md5") or ""})
    metric, margin = spec.primary_metric, spec.min_margin
    new = str(version.version)
    challenger_score = _score(summary, metric)
    extra = {"protocol": summary.get("protocol", "")}
    if evaluation_run_id:
        extra["evaluation_run"] = evaluation_run_id
    if champion is None:
        decision = Decision(spec.name, new, "promoted", f"first version of {spec.name}: there was no "
                            "champion yet", metric, challenger_score, None, None, margin, extra)
    else:
        champion_score = None
        try:
            champion_score = _score(score_champion(f"models:/{spec.name}/{champion.version}"), metric)
            promoted, reason = decide(metric, challenger_score, champion_score, margin)
        except Exception as exc:  # any failure (missing files, another frame size …) must not fail the evaluation
            from vidpred.tracking import error_text

            promoted, reason = False, (f"champion v{champion.version} could not be scored on this evaluation "
                                       f"({error_text(exc)[:500]}), so the challenger cannot be shown to be better")
        decision = Decision(spec.name, new, "promoted" if promoted else "kept", reason, metric,
                            challenger_score, champion_score, str(champion.version), margin, extra)
    if decision.promoted:
        client.set_registered_model_alias(spec.name, CHAMPION, new)
        client.delete_registered_model_alias(spec.name, CHALLENGER)
    for key, value in decision.tags().items():
        client.set_model_version_tag(spec.name, new, key, value)
    if evaluation_run_id:
        _log_on_run(client, evaluation_run_id, decision)
    return decision


def _decided(client, model_dir, spec: PromotionSpec) -> Decision | None:
    """The decision already recorded for this LoggedModel's version of ``spec.name``, if there is one."""
    from vidpred.tracking import read_model_pointer

    pointer = read_model_pointer(model_dir)
    if pointer is None or not client.search_registered_models(filter_string=f"name = '{spec.name}'"):
        return None
    for mv in client.search_model_versions(f"name = '{spec.name}'"):
        tags = mv.tags or {}
        if mv.source == pointer["model_uri"] and tags.get(f"{TAG}.decision"):
            def num(key):
                text = tags.get(f"{TAG}.{key}", "")
                return float(text) if text else None

            return Decision(spec.name, str(mv.version), tags[f"{TAG}.decision"], tags.get(f"{TAG}.reason", ""),
                            tags.get(f"{TAG}.metric", ""), num("challenger_score"), num("champion_score"),
                            tags.get(f"{TAG}.champion_version") or None, num("margin") or 0.0)
    return None


def _log_on_run(client, run_id: str, decision: Decision) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics = [Metric(f"promotion/{who}_{decision.metric}", float(score), now, 0)
               for who, score in (("challenger", decision.challenger_score), ("champion", decision.champion_score))
               if score is not None]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in decision.tags().items()])


# ------------------------------------------------------------------------------------------ commands

def promote(name: str, version: str | int, reason: str = "") -> Decision:
    """Make ``version`` of ``name`` the champion by hand (``vidpred models promote``), recorded as a manual override."""
    from mlflow.exceptions import MlflowException

    client = _client()
    version = str(version).strip()
    if not version.isdigit():
        raise VidpredError(f"model version must be a number, got {version!r}")
    try:
        client.get_registered_model(name)
    except MlflowException:
        known = [m.name for m in client.search_registered_models(filter_string=f"name LIKE '{PREFIX}%'")]
        raise VidpredError(f"no registered model {name!r} (registered: {', '.join(sorted(known)) or 'none'})") from None
    try:
        client.get_model_version(name, version)
    except MlflowException:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise VidpredError(f"{name} has no version {version} (versions: {', '.join(map(str, known)) or 'none'})") \
            from None
    champion = _alias_version(client, name, CHAMPION)
    if champion is not None and str(champion.version) == version:
        raise VidpredError(f"{name} v{version} is already the champion")
    challenger = _alias_version(client, name, CHALLENGER)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    why = f"manual override (vidpred models promote) by {user} at {when}" + (f": {reason}" if reason else "") + \
        (f"; replaces champion v{champion.version}" if champion is not None else "")
    decision = Decision(name, version, "manual", why, champion_version=str(champion.version) if champion else None,
                        extra={"user": user})
    client.set_registered_model_alias(name, CHAMPION, version)
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    return decision


def list_models(prefix: str = PREFIX) -> list[dict]:
    """Every registered model named ``prefix…`` with its versions (newest first): aliases, decision, scores."""
    client = _client()
    out = []
    for rm in sorted(client.search_registered_models(filter_string=f"name LIKE '{prefix}%'"), key=lambda m: m.name):
        by_version: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        versions = []
        for mv in sorted(client.search_model_versions(f"name = '{rm.name}'"), key=lambda v: -int(v.version)):
            tags = mv.tags or {}
            versions.append({"version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
                             "decision": tags.get(f"{TAG}.decision", ""), "reason": tags.get(f"{TAG}.reason", ""),
                             "metric": tags.get(f"{TAG}.metric", ""),
                             "score": tags.get(f"{TAG}.challenger_score", ""),
                             "protocol": tags.get("vidpred.protocol", ""), "source": mv.source,
                             "run_id": mv.run_id or tags.get("vidpred.run_id", "")})
        out.append({"name": rm.name, "aliases": {k: str(v) for k, v in (rm.aliases or {}).items()},
                    "versions": versions})
    return out


def format_models(models: list[dict]) -> str:
    """``vidpred models list`` output: one block per registered model, one line per version."""
    if not models:
        return "no registered vidpred models (a pipeline run's evaluations register them)"
    lines = []
    for m in models:
        aliases = ", ".join(f"{a} v{v}" for a, v in sorted(m["aliases"].items())) or "no aliases"
        lines.append(f"{m['name']}  ({aliases}; {len(m['versions'])} version(s))")
        for v in m["versions"]:
            score = f"{v['metric']} {float(v['score']):.4g}" if v["metric"] and v["score"] else "-"
            lines.append(f"  v{v['version']:<4} {','.join(v['aliases']) or '-':<20} {v['decision'] or '-':<9} "
                         f"{score:<16} {v['protocol'] or '-':<20} {v['reason']}")
    return "\n".join(lines)


__all__ = ["model_name", "PromotionSpec", "Decision", "decide", "register", "promote_evaluated", "promote",
           "list_models", "format_models", "higher_is_better", "CHAMPION", "CHALLENGER"]
