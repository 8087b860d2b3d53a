"""The one vidpred command line. Every command has --help; user errors print one line and exit 2.

Logic lives in the library modules; this file parses arguments and calls them (imports are lazy so
``vidpred --help`` is fast).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from vidpred.commands_landmarks import app as landmarks_app
from vidpred.commands_models import app as models_app
from vidpred.commands_moso import app as moso_app
from vidpred.errors import VidpredError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="vidpred: reproducible video prediction (MOSO, unsupervised landmarks, corr-wise losses).")
data_app = typer.Typer(no_args_is_help=True, help="Prepare, validate and version datasets.")
preprocess_app = typer.Typer(no_args_is_help=True, help="Preprocessing stages (MOSO decomposition).")
app.add_typer(data_app, name="data")
app.add_typer(preprocess_app, name="preprocess")
train_app = typer.Typer(no_args_is_help=True, help="Training stages (one shared loop; checkpoints, resume, MLflow).")
experiment_app = typer.Typer(no_args_is_help=True, help="Paper experiments (e.g. the CorrWise toy car).")
app.add_typer(train_app, name="train")
app.add_typer(experiment_app, name="experiment")

SetOpt = typer.Option(None, "--set", help="Override a config value: key=value (repeatable).")


def _parse_options(items: Optional[List[str]]) -> dict:
    from vidpred.config import parse_override

    return dict(parse_override(i) for i in (items or []))


@data_app.command("prepare")
def data_prepare(
    dataset: str = typer.Option(..., help="Source name: kth, bair, kitti, vimeo90k, bbcpose, mmnist, folder, shapes, toycar."),
    out: Path = typer.Option(..., help="Output store directory (written atomically)."),
    source: Optional[str] = typer.Option(None, help="Local path or URL of the raw data (default: the source's own)."),
    size: str = typer.Option("64", help="Frame size: N (square N×N) or HxW, e.g. 64x128."),
    crop: str = typer.Option("center", help="center (centre crop to the target aspect, then resize), aspect (resize so the target fits, then centre crop; KITTI 256x512), full (resize, aspect not kept), bbox (around the source's keypoints, e.g. bbcpose)."),
    clip_len: int = typer.Option(16, "--clip-len", help="Clip length T the store must serve (videos shorter are reported)."),
    option: Optional[List[str]] = typer.Option(None, "--option", "-o", help="Source option key=value (repeatable), e.g. num_videos=8."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where downloads/extractions are cached (default ~/.cache/vidpred)."),
):
    """Download/read a dataset, decode and resize frames, write clip shards + a parquet manifest."""
    from vidpred.data.prepare import prepare

    summary = prepare(dataset=dataset, out=out, source=source, size=size, clip_len=clip_len,
                      options=_parse_options(option), cache_dir=cache_dir, crop=crop)
    typer.echo(summary.describe())


@data_app.command("validate")
def data_validate(
    directory: Path = typer.Argument(..., help="A clip store written by `vidpred data prepare`."),
    clip_len: Optional[int] = typer.Option(None, "--clip-len", help="Clip length to require (default: the store's)."),
    report_dir: Optional[Path] = typer.Option(None, help="Where to write the GX result (default: the sibling folder DIR.validation)."),
    test_fraction: Optional[str] = typer.Option(None, help="LO,HI bounds of the test share (default 0.05,0.5); for a "
                                                           "published split outside them."),
    val_fraction: Optional[str] = typer.Option(None, help="LO,HI bounds of the val share (default 0.01,0.5)."),
):
    """Run the Great Expectations gates on a store; exit 1 (with a JSON + text report) if any fails."""
    from vidpred.data.validate import validate_store

    def pair(text: Optional[str]):
        return None if text is None else text.split(",")

    result = validate_store(directory, clip_len=clip_len, report_dir=report_dir, test_fraction=pair(test_fraction),
                            val_fraction=pair(val_fraction))
    typer.echo(result.describe())
    if not result.success:
        raise typer.Exit(1)


@data_app.command("version")
def data_version():
    """Re-prepare the default dataset into data/ (smoke profile settings), `dvc add` it, `dvc push` it."""
    from vidpred.config import REPO_ROOT
    from vidpred.data.versioning import version_default

    typer.echo(f"data/ md5 {version_default(REPO_ROOT)} (recorded in data.dvc, pushed to the default remote)")


@preprocess_app.command("moso")
def preprocess_moso(
    input: Path = typer.Option(..., "--input", help="A clip store."),
    out: Path = typer.Option(..., help="Output directory of the MOSO store (written atomically)."),
    clip_len: Optional[int] = typer.Option(None, "--clip-len", help="Clip length (default: the store's)."),
    lower: float = typer.Option(0.1, help="Lower threshold of the object band (paper: 0.1, MOSO appendix A)."),
    upper: float = typer.Option(0.9, help="Upper threshold of the object band (paper: 0.9, MOSO appendix A)."),
):
    """Decompose clips into motion / scene / object videos (MOSO appendix A)."""
    from vidpred.preprocess.moso import preprocess_store

    summary = preprocess_store(input, out, clip_len=clip_len, lower=lower, upper=upper)
    typer.echo(summary.describe())


OnlyOpt = typer.Option(None, "--only", help="Comma-separated tracks to run (default: every enabled track of "
                                              "the profile); only their datasets are prepared.")


@app.command("run")
def run(
    profile: str = typer.Option("smoke", help="Pipeline profile: configs/<profile>/pipeline.yaml."),
    only: Optional[str] = OnlyOpt,
    set_: Optional[List[str]] = SetOpt,
    workdir: Optional[Path] = typer.Option(None, help="kfp.local pipeline root (default ./runs)."),
    refresh_data: bool = typer.Option(False, "--refresh-data", help="Re-prepare every dataset from its source and "
                                      "compare its md5 with the DVC remote's ($VIDPRED_DVC_REMOTE), as a scheduled "
                                      "run does; with data_refresh.on_unchanged=skip unchanged data trains nothing."),
):
    """Run the reproduction pipeline locally through kfp.local (SubprocessRunner): each dataset prepared and
    gated once, then every track; a failed track does not stop the others (the run then exits non-zero)."""
    from vidpred.orchestrate import run_local
    from vidpred.profile import split_only

    result = run_local(profile=profile, overrides=set_ or [], workdir=workdir, only=split_only(only),
                       refresh_data=refresh_data)
    typer.echo(result.describe())


@app.command("compile")
def compile_(
    profile: str = typer.Option("paper", help="Pipeline profile: configs/<profile>/pipeline.yaml."),
    out: Path = typer.Option(..., help="Where to write the pipeline YAML."),
    only: Optional[str] = OnlyOpt,
    set_: Optional[List[str]] = SetOpt,
):
    """Compile the pipeline to KFP v2 YAML (one branch per track; resources, GPUs, tolerations, node selectors)."""
    from vidpred.orchestrate import compile_pipeline
    from vidpred.profile import split_only

    path = compile_pipeline(profile=profile, out=out, overrides=set_ or [], only=split_only(only))
    typer.echo(f"wrote {path}")


HostOpt = typer.Option(..., "--host", envvar="KF_PIPELINES_ENDPOINT",
                       help="Kubeflow Pipelines API URL, e.g. http://localhost:8080 (port-forward) or https://HOST/pipeline.")
TokenOpt = typer.Option(None, "--token", envvar="KF_PIPELINES_TOKEN", show_envvar=True,
                        help="Bearer token for the KFP API (else a service-account token file at "
                             "$KF_PIPELINES_SA_TOKEN_PATH, if set, is used).")
CookieOpt = typer.Option(None, "--cookie", envvar="KF_PIPELINES_COOKIE", show_envvar=True,
                         help="Session cookie of a Kubeflow login, e.g. authservice_session=…")
NamespaceOpt = typer.Option(None, "--namespace", help="Kubeflow profile namespace (multi-user deployments).")
ParamOpt = typer.Option(None, "--param", help="Run parameter name=value (repeatable; e.g. tracking_uri=…).")
ExperimentOpt = typer.Option(None, "--experiment", help="KFP experiment, created if new (default: the profile's "
                                                        "tracking.experiment).")


def _auth(token, cookie, namespace):
    from vidpred.submit import Auth

    return Auth(token=token, cookie=cookie, namespace=namespace)


@app.command("submit")
def submit(
    profile: str = typer.Option("paper", help="Pipeline profile: configs/<profile>/pipeline.yaml."),
    host: str = HostOpt,
    experiment: Optional[str] = ExperimentOpt,
    wait: bool = typer.Option(False, "--wait", help="Follow the run to its end; exit 0 if it succeeded, 1 if not."),
    only: Optional[str] = OnlyOpt,
    set_: Optional[List[str]] = SetOpt,
    param: Optional[List[str]] = ParamOpt,
    run_name: Optional[str] = typer.Option(None, "--run-name", help="Run name (default: pipeline name and UTC time)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="KFP execution caching of the uploaded version."),
    poll: float = typer.Option(15.0, "--poll", min=0.01, help="Seconds between status checks with --wait."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, help="Stop waiting after this many seconds."),
    token: Optional[str] = TokenOpt,
    cookie: Optional[str] = CookieOpt,
    namespace: Optional[str] = NamespaceOpt,
):
    """Compile the profile, upload it to Kubeflow Pipelines (a new version if it exists), start a run, print its URL."""
    from vidpred.profile import split_only
    from vidpred.submit import submit as submit_run

    result = submit_run(profile, host, experiment=experiment, overrides=set_ or [], only=split_only(only),
                        params=param or [], run_name=run_name, wait=wait, poll=poll, timeout=timeout, cache=cache,
                        auth=_auth(token, cookie, namespace), echo=typer.echo)
    if result.failure():
        typer.echo(f"error: {result.failure()}", err=True)
        raise typer.Exit(1)


@app.command("schedule")
def schedule(
    host: str = HostOpt,
    profile: str = typer.Option("paper", help="Pipeline profile: configs/<profile>/pipeline.yaml."),
    cron: Optional[str] = typer.Option(None, "--cron", help="When to run: 5-field crontab ('0 3 * * *', seconds 0 "
                                       "are added) or KFP's 6-field form, seconds first; UTC."),
    name: Optional[str] = typer.Option(None, "--name", help="Recurring run name (default <pipeline>-<profile>-retrain); "
                                       "an existing one of this name is replaced."),
    list_: bool = typer.Option(False, "--list", help="List the recurring runs."),
    disable: Optional[str] = typer.Option(None, "--disable", metavar="NAME", help="Disable the recurring run NAME."),
    experiment: Optional[str] = ExperimentOpt,
    only: Optional[str] = OnlyOpt,
    set_: Optional[List[str]] = SetOpt,
    param: Optional[List[str]] = ParamOpt,
    cache: bool = typer.Option(False, "--cache/--no-cache", help="KFP execution caching (off: every scheduled run "
                                                                 "re-prepares its data from the source)."),
    token: Optional[str] = TokenOpt,
    cookie: Optional[str] = CookieOpt,
    namespace: Optional[str] = NamespaceOpt,
):
    """Scheduled retraining: a KFP recurring run (no catch-up, one run at a time), or --list / --disable NAME."""
    from vidpred import submit as kfp_submit
    from vidpred.profile import split_only

    if sum([cron is not None, list_, disable is not None]) != 1:
        raise VidpredError("give one of --cron EXPR (with --profile), --list or --disable NAME")
    auth = _auth(token, cookie, namespace)
    if list_:
        found = kfp_submit.list_schedules(host, auth)
        typer.echo("\n".join(s.describe() for s in found) if found else "no recurring runs")
    elif disable is not None:
        for s in kfp_submit.disable_schedule(host, disable, auth):
            typer.echo(f"disabled recurring run {s.name} (id {s.recurring_run_id})")
    else:
        result = kfp_submit.schedule(profile, host, cron, name=name, experiment=experiment, overrides=set_ or [],
                                     only=split_only(only), params=param or [], cache=cache, auth=auth, echo=typer.echo)
        typer.echo(result.describe())


@app.command("report")
def report(
    run: str = typer.Option(..., "--run", help="Id of the pipeline's parent MLflow run (its evaluation runs are reported)."),
    out: Path = typer.Option(..., help="Output directory for report.md, report.html and images/ (written atomically)."),
):
    """Write the reproduction report (Markdown + standalone HTML, papers' numbers beside ours) and log it to the run."""
    from vidpred.evaluate.report import write_report

    typer.echo(write_report(run, out).describe())


@app.command("evaluate")
def evaluate(
    store: Path = typer.Option(..., help="Clip store to evaluate on (`vidpred data prepare`)."),
    method: str = typer.Option(..., help="copy-last, linear, corrwise, moso or landmarks."),
    out: Path = typer.Option(..., help="Output folder: metrics.json, per_clip.csv, per_frame.png, samples.png."),
    model: Optional[str] = typer.Option(None, help="Trained model: file, folder, or MLflow URI (runs:/<id>/model)."),
    protocol: Optional[str] = typer.Option(None, help="A protocol of configs/protocols.yaml (e.g. shapes-corrwise); "
                                           "--context/--horizon/--samples/--split/--metrics/--clips override it."),
    context: Optional[int] = typer.Option(None, help="Context frames K."),
    horizon: Optional[int] = typer.Option(None, help="Predicted frames H."),
    samples: Optional[int] = typer.Option(None, help="Trials per clip for stochastic methods (best of N per metric)."),
    split: Optional[str] = typer.Option(None, help="test (default), val, train or all."),
    metrics: Optional[str] = typer.Option(None, help="Comma-separated: psnr,ssim,lpips,mse,l1,fvd (default psnr,ssim,lpips,mse,l1)."),
    clips: Optional[int] = typer.Option(None, help="Number of clips drawn (seeded); default all windows."),
    seed: int = typer.Option(0, help="Seed of the clip choice and of sampling."),
    track: Optional[str] = typer.Option(None, help="Track name in MLflow and the report (default: the protocol)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(8, help="Clips per forward pass."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log an MLflow run evaluate/<track>/<method>."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a protocol setting (with --protocol), "
                                             "e.g. methods.moso.token_temperature=1.0 (repeatable)."),
):
    """Score a method or baseline on held-out clips: K context frames → H predicted frames, one metric convention."""
    from vidpred.evaluate.benchmark import evaluate_one
    from vidpred.evaluate.protocols import adhoc_protocol, get_protocol

    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    if protocol:
        overrides = [f"{k}={v}" for k, v in (("context", context), ("horizon", horizon), ("samples", samples),
                                              ("split", split), ("clips.count", clips),
                                              ("clips.seed", seed or None)) if v is not None]
        if wanted:
            overrides.append("metrics=[" + ",".join(wanted) + "]")
        if samples is not None and samples > 1:
            overrides.append("best_of=per_metric")
        spec = get_protocol(protocol, overrides + list(set_ or []))
    else:
        if context is None or horizon is None:
            raise VidpredError("give --context and --horizon, or --protocol NAME")
        if set_:
            raise VidpredError("--set overrides protocol settings: use it with --protocol NAME")
        spec = adhoc_protocol(context, horizon, split or "test", wanted or ("psnr", "ssim", "lpips", "mse", "l1"),
                              samples or 1, clips, seed)
    result = evaluate_one(store, method, spec, out, model=model, track=track, required_metrics=wanted or (),
                          device=device, batch_size=batch_size, log_mlflow=mlflow)
    typer.echo(result.describe())


ConfigOpt = typer.Option(..., "--config", help="YAML config file or a name under configs/ (e.g. smoke/corrwise).")


NprocOpt = typer.Option(None, "--nproc", min=1, help="Run the stage under torchrun with N local processes (PyTorch "
                        "DDP: one per GPU, or CPU processes with gloo); train.batch_size stays the global batch.")


def _train(module: str, config: str, overrides: Optional[List[str]], nproc: Optional[int] = None) -> None:
    import importlib

    from vidpred.config import resolve_config_path

    resolve_config_path(config)  # a missing file is reported before the (slow) stage import
    if nproc is not None:
        from vidpred.train.distributed import LaunchError, launch

        try:
            launch(module, config, overrides or [], nproc=nproc)
        except LaunchError as exc:  # one line; the exit status of torchrun goes on
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.returncode)
        return
    from vidpred.train import distributed

    worker = distributed.under_torchrun()  # then errors go to torchrun's report and rank 0 alone speaks
    try:
        result = importlib.import_module(f"vidpred.train.{module}").main(config, overrides or [])
    except VidpredError as exc:
        if worker and not distributed.record_worker_error(exc):
            raise typer.Exit(2)
        raise
    if worker and not distributed.is_main():
        return
    describe = getattr(result, "describe", None)
    typer.echo(describe() if callable(describe) else str(result))


@train_app.command("corrwise")
def train_corrwise(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, nproc: Optional[int] = NprocOpt):
    """Train the 3D-conv predictor with a correspondence-wise (or pixel-wise) loss."""
    _train("corrwise", config, set_, nproc)


@train_app.command("moso-vqvae")
def train_moso_vqvae(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, nproc: Optional[int] = NprocOpt):
    """Train MOSO-VQVAE (motion / scene / object encoders, shared codebook, merge decoder)."""
    _train("moso_vqvae", config, set_, nproc)


@train_app.command("moso-transformer")
def train_moso_transformer(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, nproc: Optional[int] = NprocOpt):
    """Train MOSO-Transformer (MaskGIT over scene / object / motion tokens)."""
    _train("moso_transformer", config, set_, nproc)


@train_app.command("landmarks")
def train_landmarks(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, nproc: Optional[int] = NprocOpt):
    """Pretrain the unsupervised landmark autoencoder."""
    _train("landmarks", config, set_, nproc)


@train_app.command("landmark-dynamics")
def train_landmark_dynamics(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, nproc: Optional[int] = NprocOpt):
    """Train the LSTM landmark dynamics in (mean, Cholesky) space."""
    _train("landmark_dynamics", config, set_, nproc)


@experiment_app.command("toycar")
def experiment_toycar(
    loss: str = typer.Option("l1", help="Base loss: l1, mse or l1+perceptual."),
    mode: str = typer.Option("corrwise", help="pixelwise or corrwise."),
    out: Path = typer.Option(..., help="Output directory (image, result.json, report)."),
    curve: bool = typer.Option(False, "--curve", help="Run the loss-versus-positional-offset curve (Fig. 2b) instead."),
    set_: Optional[List[str]] = SetOpt,
):
    """CorrWise Fig. 2: the image minimising the expected loss under positional uncertainty."""
    from vidpred.experiments.toycar import main as toycar_main

    result = toycar_main(loss=loss, mode=mode, out=out, curve=curve, overrides=set_ or [])
    describe = getattr(result, "describe", None)
    typer.echo(describe() if callable(describe) else str(result))


weights_app = typer.Typer(no_args_is_help=True, help="Pretrained weights (AlexNet, VGG19, RAFT, I3D): status and fetch.")
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def weights_list():
    """Show each registered weight file, its status in the cache, and where it comes from."""
    from vidpred.weights import REGISTRY, cache_dir, weight_status

    typer.echo(f"cache: {cache_dir()}")
    for name in sorted(REGISTRY):
        spec = REGISTRY[name]
        typer.echo(f"{name:12s} {weight_status(name):10s} {spec.filename}  <- {spec.url}")


@weights_app.command("fetch")
def weights_fetch(name: str = typer.Argument(..., help="Registry name, e.g. alexnet, vgg19, raft_large, i3d.")):
    """Download one weight file into the cache (or say exactly where to put it when offline)."""
    from vidpred.weights import weight_path

    typer.echo(f"{name}: {weight_path(name)}")  # downloads unless VIDPRED_OFFLINE=1


app.add_typer(moso_app, name="moso")
app.add_typer(landmarks_app, name="landmarks")
app.add_typer(models_app, name="models")


def main() -> None:
    """Console entry point. typer's standalone mode prints usage errors (exit 2) and applies exit codes;
    a VidpredError becomes one ``error: …`` line on stderr and exit code 2."""
    try:
        app()
    except VidpredError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
