"""`vidpred models …`: the registered models of the tracks (``vidpred-<track>-<method>``) and their aliases.

``list`` shows every version with its aliases (``champion``: the model in use; ``challenger``: the newest
candidate that did not beat it), the promotion decision, its score and reason. ``promote NAME VERSION`` moves
``champion`` by hand — a deliberate override, recorded on the version as such (who, when, why).
Logic: :mod:`vidpred.registry`.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Registered models: list them, promote a version to champion by hand.")


@app.command("list")
def models_list(prefix: str = typer.Option("vidpred-", help="Only registered models whose name starts with this.")):
    """Every registered vidpred model: versions, aliases, promotion decisions and scores."""
    from vidpred.registry import format_models, list_models

    typer.echo(format_models(list_models(prefix)))


@app.command("promote")
def models_promote(
    name: str = typer.Argument(..., help="Registered model, e.g. vidpred-corrwise-corrwise."),
    version: str = typer.Argument(..., help="The version to make champion."),
    reason: str = typer.Option("", help="Why (recorded on the version with your user name and the time)."),
):
    """Make VERSION the champion of NAME by hand (a manual override, recorded as such)."""
    from vidpred.registry import promote

    typer.echo(promote(name, version, reason).describe())
