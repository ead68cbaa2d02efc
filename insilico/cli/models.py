"""`insilico models`: built-in models with their parameters and units; ``--show FILE`` prints a
model written as text equations (`insilico.models.load_text_model`) back with its units.

Model text contains square brackets (``[mg/h]``, ``[+ke0]``) that rich would read as markup and
drop, so every string is printed literally (``markup=False`` / `rich.text.Text`).
"""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors

TITLE = ("built-in models: PK[+met1|+met2][+ke0][+PD], e.g. 2cmt_oral+ke0+emax, 2cmt_oral+met1, "
         "1cmt_iv+friberg; PK = {1,2,3}cmt_{iv,oral,transitN}[_mm|_mixed|_tmdd|_tmdd_qss|_tmdd_mm]")


def parameter_list(model) -> str:
    """``"CL [L/h], V [L], ..."``: every parameter of ``model`` with its units."""
    return ", ".join(f"{p.name} [{p.units}]" for p in model.parameters)


@handle_errors
def models_command(name: str | None = typer.Argument(None, help="Describe one model in detail."),
                   show: Path | None = typer.Option(None, "--show", help="Print a text model file (YAML) back "
                                                                          "with units and its solver path.")):
    """List built-in models (or describe one: states, parameters with units, outputs)."""
    from insilico.models import builtin_model_names, describe_text_model, get_model, load_text_model
    if show is not None:
        console.print(describe_text_model(load_text_model(show)), markup=False, highlight=False)
        return
    if name:
        console.print(get_model(name).describe(), markup=False, highlight=False)
        return
    from rich.table import Table
    from rich.text import Text
    t = Table(title=Text(TITLE))
    t.add_column("model")
    t.add_column(Text("parameters [units]"))
    t.add_column("outputs")
    t.add_column("exact path")
    for n in builtin_model_names():
        m = get_model(n)
        t.add_row(Text(n), Text(parameter_list(m)), Text(", ".join(m.output_names)), "yes" if m.is_linear else "ODE")
    console.print(t)
