"""`insilico validate SPEC`: check a trial spec without running it."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors


@handle_errors
def validate_command(
    spec: Path = typer.Argument(..., help="Trial spec (YAML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec value: key.path=value."),
):
    """Validate a trial spec (schema, model, cohort, regimens, endpoints); exit 2 if invalid."""
    from insilico.trials import check_crossover, is_crossover_spec, load_crossover_spec, load_trial_spec, prepare
    if is_crossover_spec(spec):
        s, base = load_crossover_spec(spec, set_)
        model, _ = check_crossover(s, base)
        c = s.crossover
        console.print(f"[green]valid[/] {s.name}: crossover, model {model.name}, {len(c.sequences)} sequences x "
                      f"{len(c.sequences[0])} periods, N = {s.n}, BE of {s.analysis.test} vs {s.analysis.reference}")
        return
    s, base = load_trial_spec(spec, set_)
    ctx = prepare(s, base)
    console.print(f"[green]valid[/] {s.name}: model {ctx.model.name}, {len(s.arms)} arms, N = {s.n}, "
                  f"{s.replicates.n} replicate(s), {len(s.endpoints)} endpoints, design {s.design}")
