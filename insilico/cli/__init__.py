"""The `insilico` command line: a thin Typer layer over the library (one module per command)."""
from __future__ import annotations

import typer

from insilico.cli.campaign import campaign_command
from insilico.cli.certs import certs_command
from insilico.cli.cohort import cohort_command
from insilico.cli.export import export_command
from insilico.cli.fit import fit_command
from insilico.cli.import_ import import_app
from insilico.cli.models import models_command
from insilico.cli.plot import plot_command
from insilico.cli.report import report_command
from insilico.cli.run import run_command
from insilico.cli.summary import summary_command
from insilico.cli.twin import twin_app
from insilico.cli.validate import validate_command

app = typer.Typer(help="insilico: in-silico clinical trials.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.command("run")(run_command)
app.command("validate")(validate_command)
app.command("cohort")(cohort_command)
app.command("models")(models_command)
app.command("summary")(summary_command)
app.command("plot")(plot_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command("campaign")(campaign_command)
app.command("certs")(certs_command)
app.command("fit")(fit_command)
app.add_typer(twin_app, name="twin")
app.add_typer(import_app, name="import")


def main() -> None:
    app()
