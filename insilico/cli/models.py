"""`insilico models`: built-in models with their parameters and units."""
from __future__ import annotations

import typer

from insilico.cli._common import console, handle_errors


@handle_errors
def models_command(name: str | None = typer.Argument(None, help="Describe one model in detail.")):
    """List built-in models (or describe one: states, parameters with units, outputs)."""
    from insilico.models import builtin_model_names, get_model
    if name:
        console.print(get_model(name).describe(), highlight=False)
        return
    from rich.table import Table
    t = Table(title="built-in models (compose PK + [ke0] + PD with '+', e.g. 2cmt_oral+ke0+emax)")
    t.add_column("model")
    t.add_column("parameters [units]")
    t.add_column("exact path")
    for n in builtin_model_names():
        m = get_model(n)
        t.add_row(n, ", ".join(f"{p.name} [{p.units}]" for p in m.parameters), "yes" if m.is_linear else "ODE")
    console.print(t)
