"""The ``ds.insilico`` accessor: one set of calls on a trial results store for Jupyter and the CLI.

Registered when `insilico.store` is imported (``insilico.open_results`` does it)::

    ds = insilico.open_results("results/dr.zarr")
    ds.insilico.endpoints                          # ['effect_change', 'responder', 'auc_ss', ...]
    ds.insilico.arm_values("auc_ss", replicate=0)  # long DataFrame: replicate, arm, subject, value
    ds.insilico.analysis["summary"]["auc_ss"]      # stored analysis tables as DataFrames
    ds.insilico.plot.profiles("conc", log=True)    # matplotlib Figure
    ds.insilico.report("dr.html")

Every method calls the library function that does the work (`insilico.analysis.nca`,
`insilico.analysis.plots`, `insilico.analysis.report`, `insilico.analysis.export`); nothing is
computed here that the library does not compute the same way.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from insilico.store import _results as R


@xr.register_dataset_accessor("insilico")
class InsilicoAccessor:
    """Trial-results methods on an ``xarray.Dataset`` opened by `insilico.open_results`."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    # -- stored documents ---------------------------------------------------------------------
    @property
    def spec(self) -> dict | None:
        """The resolved trial spec (dict, as validated and stored by the run), or ``None``."""
        return R.stored_json(self._ds, "spec")

    @property
    def cohort_spec(self) -> dict | None:
        """The cohort spec the run used (dict), or ``None``."""
        return R.stored_json(self._ds, "cohort_spec")

    @property
    def analysis(self) -> dict:
        """Analysis tables as DataFrames: ``summary`` and ``comparisons`` map endpoint -> table;
        ``probability_of_success``, ``pta``, ``power`` are tables (present when the spec asks for
        them). Read from the store; a run that has not finished has none stored, and they are
        computed from the values written so far (`insilico.analysis.results.analyse_store`)."""
        doc = R.stored_json(self._ds, "analysis")
        if doc is None and self.spec is not None:
            from insilico.analysis.results import analyse_store
            doc = analyse_store(self._ds)
        return R.analysis_tables(doc)

    # -- variables ----------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        """Endpoint variables, in the spec's order."""
        return R.endpoint_names(self._ds)

    @property
    def outputs(self) -> list[str]:
        """Model outputs over (replicate, arm, subject, time), without ``*_obs`` copies."""
        return R.output_names(self._ds)

    @property
    def observed(self) -> list[str]:
        """Outputs with residual error (``conc_obs``), over (replicate, arm, subject, time)."""
        return R.observed_names(self._ds)

    @property
    def covariates(self) -> list[str]:
        """Cohort covariates (drawn and derived), over (replicate, subject)."""
        return R.covariate_names(self._ds)

    @property
    def parameters(self) -> list[str]:
        """Individual model parameters, over (replicate, subject)."""
        return R.parameter_names(self._ds)

    @property
    def complete(self) -> bool:
        """True when every work unit has been written (a run that can be resumed is not)."""
        return R.is_complete(self._ds)

    @property
    def flagged(self) -> pd.DataFrame:
        """Subject–arm pairs without results (status > 0) and why: replicate, arm, subject,
        status, reason, detail (`insilico.store.flagged_subjects`)."""
        return R.flagged_subjects(self._ds)

    def arm_values(self, name: str, replicate=None, *, arm=None, ok_only: bool = False) -> pd.DataFrame:
        """Values of ``name`` for the simulated subject–arm pairs: a long DataFrame (replicate,
        arm, subject, [time,] value); see `insilico.store.arm_values`."""
        return R.arm_values(self._ds, name, replicate, arm=arm, ok_only=ok_only)

    # -- analysis -----------------------------------------------------------------------------
    def nca(self, output: str = "conc", *, ok_only: bool = True, **kwargs) -> xr.Dataset:
        """Non-compartmental analysis of ``output`` for every (replicate, arm, subject): calls
        `insilico.analysis.nca` on the stored profiles (pairs not simulated, or with ``ok_only``
        not status 0, are NaN and flagged ``no_data``). Unless given, ``dose`` (mg) and
        ``dose_time`` (h) are those of the first dose each subject took (no dose: ``dose`` NaN,
        flag ``no_dose``). Other keyword arguments are passed on (``route``, ``lloq``, …)."""
        from insilico.analysis import nca
        ds = self._ds
        conc = ds[output].where(R.simulated_pairs(ds, ok_only=ok_only))
        if "dose_amt" in ds.variables:
            first = ds["dose_amt"].isel(dose=0, drop=True)
            kwargs.setdefault("dose", first.where(first > 0))
            kwargs.setdefault("dose_time", ds["dose_time"].isel(dose=0, drop=True).fillna(0.0))
        return nca(conc, **kwargs)

    @property
    def plot(self) -> _Plots:
        """Plots (matplotlib Figures): ``profiles``, ``endpoints``, ``exposure_response``, ``pta``,
        ``power``, ``all``."""
        return _Plots(self._ds)

    def report(self, path, **kwargs) -> Path:
        """Write the self-contained HTML report (`insilico.analysis.report.write_report`)."""
        from insilico.analysis.report import write_report
        return write_report(self._ds, path, **kwargs)

    def export(self, format: str, path, **kwargs) -> Path:
        """Export as ``nonmem``, ``adam`` or ``parquet`` (`insilico.analysis.export.export`)."""
        from insilico.analysis.export import export
        return export(self._ds, format, path, **kwargs)


class _Plots:
    """``ds.insilico.plot``: the functions of `insilico.analysis.plots` bound to the store."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def profiles(self, output: str = "conc", **kwargs):
        """`insilico.analysis.plots.plot_profiles`."""
        from insilico.analysis.plots import plot_profiles
        return plot_profiles(self._ds, output, **kwargs)

    def endpoints(self, endpoint: str, **kwargs):
        """`insilico.analysis.plots.plot_endpoint_distributions`."""
        from insilico.analysis.plots import plot_endpoint_distributions
        return plot_endpoint_distributions(self._ds, endpoint, **kwargs)

    def exposure_response(self, exposure: str, response: str, **kwargs):
        """`insilico.analysis.plots.plot_exposure_response`."""
        from insilico.analysis.plots import plot_exposure_response
        return plot_exposure_response(self._ds, exposure, response, **kwargs)

    def pta(self):
        """`insilico.analysis.plots.plot_pta`."""
        from insilico.analysis.plots import plot_pta
        return plot_pta(self._ds)

    def power(self, **kwargs):
        """`insilico.analysis.plots.plot_power`."""
        from insilico.analysis.plots import plot_power
        return plot_power(self._ds, **kwargs)

    def all(self, outdir, **kwargs) -> list[Path]:
        """Every applicable plot as a PNG in ``outdir`` (`insilico.analysis.plots.plot_all`)."""
        from insilico.analysis.plots import plot_all
        return plot_all(self._ds, outdir, **kwargs)
