"""The one vidpred command line. Every command has --help; user errors print one line and exit 2.

Logic lives in the library modules; this file parses arguments and calls them (imports are lazy so
``vidpred --help`` is fast).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from vidpred.errors import VidpredError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="vidpred: reproducible video prediction (MOSO, unsupervised landmarks, corr-wise losses).")
data_app = typer.Typer(no_args_is_help=True, help="Prepare, validate and version datasets.")
preprocess_app = typer.Typer(no_args_is_help=True, help="Preprocessing stages (MOSO decomposition).")
app.add_typer(data_app, name="data")
app.add_typer(preprocess_app, name="preprocess")

SetOpt = typer.Option(None, "--set", help="Override a config value: key=value (repeatable).")


def _parse_options(items: Optional[List[str]]) -> dict:
    from vidpred.config import parse_override

    return dict(parse_override(i) for i in (items or []))


@data_app.command("prepare")
def data_prepare(
    dataset: str = typer.Option(..., help="Source name: kth, bair, kitti, vimeo90k, bbcpose, mmnist, folder, shapes, toycar."),
    out: Path = typer.Option(..., help="Output store directory (written atomically)."),
    source: Optional[str] = typer.Option(None, help="Local path or URL of the raw data (default: the source's own)."),
    size: int = typer.Option(64, help="Frames are centre-cropped square and resized to SIZE×SIZE."),
    clip_len: int = typer.Option(16, "--clip-len", help="Clip length T the store must serve (videos shorter are reported)."),
    option: Optional[List[str]] = typer.Option(None, "--option", "-o", help="Source option key=value (repeatable), e.g. num_videos=8."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where downloads/extractions are cached (default ~/.cache/vidpred)."),
):
    """Download/read a dataset, decode and resize frames, write clip shards + a parquet manifest."""
    from vidpred.data.prepare import prepare

    summary = prepare(dataset=dataset, out=out, source=source, size=size, clip_len=clip_len,
                      options=_parse_options(option), cache_dir=cache_dir)
    typer.echo(summary.describe())


@data_app.command("validate")
def data_validate(
    directory: Path = typer.Argument(..., help="A clip store written by `vidpred data prepare`."),
    clip_len: Optional[int] = typer.Option(None, "--clip-len", help="Clip length to require (default: the store's)."),
    report_dir: Optional[Path] = typer.Option(None, help="Where to write the GX result (default DIR/validation)."),
):
    """Run the Great Expectations gates on a store; exit 1 (with a JSON + text report) if any fails."""
    from vidpred.data.validate import validate_store

    result = validate_store(directory, clip_len=clip_len, report_dir=report_dir)
    typer.echo(result.describe())
    if not result.success:
        raise typer.Exit(1)


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


@app.command("run")
def run(
    profile: str = typer.Option("smoke", help="Pipeline profile: configs/<profile>/pipeline.yaml."),
    set_: Optional[List[str]] = SetOpt,
    workdir: Optional[Path] = typer.Option(None, help="kfp.local pipeline root (default ./runs)."),
):
    """Run the reproduction pipeline locally through kfp.local (SubprocessRunner)."""
    from vidpred.orchestrate import run_local

    result = run_local(profile=profile, overrides=set_ or [], workdir=workdir)
    typer.echo(result.describe())


@app.command("compile")
def compile_(
    profile: str = typer.Option("paper", help="Pipeline profile: configs/<profile>/pipeline.yaml."),
    out: Path = typer.Option(..., help="Where to write the pipeline YAML."),
    set_: Optional[List[str]] = SetOpt,
):
    """Compile the pipeline to KFP v2 YAML (resources, GPUs, tolerations, node selectors)."""
    from vidpred.orchestrate import compile_pipeline

    path = compile_pipeline(profile=profile, out=out, overrides=set_ or [])
    typer.echo(f"wrote {path}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except VidpredError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:  # normal exits, e.g. validation failure
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
