"""`insilico certs`: generate the TLS credentials batch clusters use (see insilico.cluster._tls)."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors
from insilico.errors import SpecError


@handle_errors
def certs_command(
    dir_: Path | None = typer.Option(None, "--dir", help="Where to write ca.pem, cert.pem, key.pem "
                                        "(default $INSILICO_TLS_DIR or ~/.config/insilico/tls)."),
    days: int = typer.Option(365, "--days", help="Validity in days."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing credentials."),
):
    """Generate a private CA and a certificate for mutual TLS between scheduler, workers and client."""
    from insilico.cluster import generate_credentials
    if days < 1:
        raise SpecError("--days", f"must be at least 1, got {days}")
    try:
        d = generate_credentials(dir_, days=days, overwrite=overwrite)
    except FileExistsError as e:
        raise SpecError("--dir", str(e)) from None
    console.print(f"TLS credentials written to {d} (ca.pem, cert.pem, key.pem; key readable by you only)")
