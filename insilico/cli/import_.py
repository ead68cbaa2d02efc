"""`insilico import nonmem run1.mod [--ext run1.ext] [--cov run1.cov] --out run1/`: translate a NONMEM control
stream."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import console, err_console, handle_errors

import_app = typer.Typer(help="Import models written for other tools.", no_args_is_help=True, add_completion=False)


@import_app.command("nonmem")
@handle_errors
def nonmem_command(
    control_stream: Path = typer.Argument(..., help="NONMEM control stream (.mod/.ctl)."),
    ext: Path = typer.Option(None, "--ext", help="NONMEM .ext file: use its final estimates as the values."),
    cov: Path = typer.Option(None, "--cov", help="NONMEM .cov file: write the covariance of the estimates, on the "
                                                 "translated quantities, to covariance.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write population.yaml, nonmem_names.yaml and "
                                                      "untranslated.txt into."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a population.yaml already there."),
):
    """Translate a NONMEM model (ADVAN1-4/11/12, ADVAN6/13 $DES) into an insilico population model. What is
    not translated, and how ambiguous code was read, is listed, each line with its reason (and written to
    untranslated.txt); exit 2 when an essential part is not translated."""
    from insilico.errors import SpecError
    from insilico.imports import import_nonmem, write_import
    from insilico.store import check_out

    check_out(out)
    if (out / "population.yaml").exists() and not overwrite:
        raise SpecError("--out", f"{out / 'population.yaml'} already exists; use --overwrite to replace it")
    result = import_nonmem(control_stream, ext=ext, cov=cov)
    paths = write_import(result, out)
    for line in result.untranslated:
        err_console.print(f"import note: {line}", markup=False, highlight=False)
    if not result.ok:
        err_console.print(f"error: {control_stream}: essential parts could not be translated "
                          f"(listed above and in {paths['untranslated']})", markup=False, highlight=False)
        raise typer.Exit(2)
    model = result.population["model"].get("name") or paths.get("model")
    console.print(f"wrote {paths['population']} ({model}, "
                  f"{len(result.population['parameters'])} parameters), {paths['names']}, "
                  f"{paths['untranslated']} ({len(result.untranslated)} lines)"
                  + "".join(f", {paths[k]}" for k in ("model", "covariance") if k in paths),
                  markup=False, highlight=False)
