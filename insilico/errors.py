"""Errors shared by every part of insilico.

`SpecError` is raised for invalid user input (specs, parameters, regimens). It names the
offending field with a dotted path so the CLI can print one clear line and exit with code 2.
"""
from __future__ import annotations


class SpecError(ValueError):
    """Invalid user input.

    Parameters
    ----------
    field : dotted path of the offending field, e.g. ``"parameters.CL"`` or ``"arms.0.dose"``.
    message : what is wrong with it.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)
