"""Names, units and descriptions of NCA output columns and flags.

Units are labels, never conversions: NCA works in whatever consistent units the data come in
(by default the project's h, mg, mg/L) and derives the unit of each parameter from them, written
in the `insilico.units` grammar (``mg*h/L``, ``mg*h**2/L``, ``percent``, ``1`` for
dimensionless numbers, counts, flags and the logarithm of a concentration).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insilico.units import DIMENSIONLESS, multiply


@dataclass(frozen=True)
class Units:
    time: str = "h"
    conc: str = "mg/L"
    dose: str = "mg"

    def _split(self):
        num, sep, den = self.conc.partition("/")
        return (num, den) if sep else (self.conc, "")

    def of(self, kind: str) -> str:
        t, c, d = self.time, self.conc, self.dose
        num, den = self._split()
        if kind == "time":
            return t
        if kind == "conc":
            return c
        if kind == "auc":
            return multiply(c, t)
        if kind == "aumc":
            return multiply(c, f"{t}**2")
        if kind == "rate":
            return f"1/{t}"
        if kind == "volume":
            return den if (den and num == d) else f"{d}/({c})"
        if kind == "clearance":
            v = self.of("volume")
            return f"{v}/{t}" if "/" not in v else f"({v})/{t}"
        if kind == "percent":
            return "percent"
        if kind in ("1", "count", "lnconc", "flags"):
            return DIMENSIONLESS
        raise KeyError(kind)


# name -> (unit kind, long_name)
SINGLE_DOSE: dict[str, tuple[str, str]] = {
    "n_obs": ("count", "Number of concentrations used (after the BLQ rule)"),
    "n_blq": ("count", "Number of concentrations below the LLOQ"),
    "c0": ("conc", "Concentration at dose time used for AUC (0 extravascular/infusion; back-extrapolated IV bolus)"),
    "cmax": ("conc", "Maximum observed concentration Cmax"),
    "tmax": ("time", "Time of Cmax after dose (first occurrence)"),
    "clast": ("conc", "Last measurable (> 0) concentration Clast"),
    "tlast": ("time", "Time of Clast after dose"),
    "auclast": ("auc", "AUC from dose to Tlast (AUC0-t)"),
    "aumclast": ("aumc", "AUMC from dose to Tlast"),
    "lambda_z": ("rate", "Terminal rate constant lambda_z (best-fit log-linear regression)"),
    "lambda_z_intercept": ("lnconc", "Intercept at dose time of the ln(C) terminal regression (C in conc units)"),
    "lambda_z_n_points": ("count", "Number of points in the lambda_z regression (0 when not estimated)"),
    "lambda_z_t_first": ("time", "First time used for lambda_z"),
    "lambda_z_t_last": ("time", "Last time used for lambda_z"),
    "r_squared": ("1", "R-squared of the lambda_z regression"),
    "adj_r_squared": ("1", "Adjusted R-squared of the lambda_z regression"),
    "span_ratio": ("1", "Span ratio: time span of lambda_z points / half-life"),
    "half_life": ("time", "Terminal half-life ln2/lambda_z"),
    "clast_pred": ("conc", "Clast predicted by the lambda_z regression"),
    "aucinf_obs": ("auc", "AUC0-inf = AUClast + Clast_obs/lambda_z"),
    "aucinf_pred": ("auc", "AUC0-inf = AUClast + Clast_pred/lambda_z"),
    "auc_pct_extrap_obs": ("percent", "Percentage of AUCinf_obs extrapolated beyond Tlast"),
    "auc_pct_extrap_pred": ("percent", "Percentage of AUCinf_pred extrapolated beyond Tlast"),
    "aumcinf_obs": ("aumc", "AUMC0-inf = AUMClast + Clast_obs*Tlast/lambda_z + Clast_obs/lambda_z^2"),
    "aumcinf_pred": ("aumc", "AUMC0-inf = AUMClast + Clast_pred*Tlast/lambda_z + Clast_pred/lambda_z^2"),
    "mrt_last": ("time", "Mean residence time to Tlast, AUMClast/AUClast (minus infusion duration/2)"),
    "mrtinf_obs": ("time", "Mean residence time AUMCinf_obs/AUCinf_obs (minus infusion duration/2)"),
    "mrtinf_pred": ("time", "Mean residence time AUMCinf_pred/AUCinf_pred (minus infusion duration/2)"),
    "cl_obs": ("clearance", "Clearance (CL/F for extravascular) Dose/AUCinf_obs"),
    "cl_pred": ("clearance", "Clearance (CL/F for extravascular) Dose/AUCinf_pred"),
    "vz_obs": ("volume", "Terminal volume (Vz/F for extravascular) Dose/(lambda_z*AUCinf_obs)"),
    "vz_pred": ("volume", "Terminal volume (Vz/F for extravascular) Dose/(lambda_z*AUCinf_pred)"),
    "vss_obs": ("volume", "Steady-state volume CL_obs*MRTinf_obs (IV routes only)"),
    "vss_pred": ("volume", "Steady-state volume CL_pred*MRTinf_pred (IV routes only)"),
    "nca_flags": ("flags", "Semicolon-separated NCA flags (see insilico.analysis.nca.FLAGS)"),
}

STEADY_STATE: dict[str, tuple[str, str]] = {
    "n_obs": ("count", "Number of concentrations used in the dosing interval (after the BLQ rule)"),
    "n_blq": ("count", "Number of concentrations below the LLOQ (whole profile)"),
    "c0": ("conc", "Concentration at the start of the dosing interval (pre-dose trough)"),
    "ctau": ("conc", "Concentration at the end of the dosing interval"),
    "cmax": ("conc", "Maximum observed concentration in the dosing interval"),
    "tmax": ("time", "Time of Cmax after the start of the interval"),
    "cmin": ("conc", "Minimum observed concentration in the dosing interval"),
    "tmin": ("time", "Time of Cmin after the start of the interval"),
    "auctau": ("auc", "AUC over the dosing interval AUCtau"),
    "cavg": ("conc", "Average concentration AUCtau/tau"),
    "fluctuation_pct": ("percent", "Peak-trough fluctuation 100*(Cmax-Cmin)/Cavg"),
    "swing_pct": ("percent", "Swing 100*(Cmax-Cmin)/Cmin"),
    "cl_ss": ("clearance", "Clearance at steady state (CL/F for extravascular) Dose/AUCtau"),
    "lambda_z": ("rate", "Terminal rate constant lambda_z within the interval"),
    "lambda_z_intercept": ("lnconc", "Intercept at interval start of the ln(C) terminal regression "
                                     "(C in conc units)"),
    "lambda_z_n_points": ("count", "Number of points in the lambda_z regression (0 when not estimated)"),
    "lambda_z_t_first": ("time", "First time (after interval start) used for lambda_z"),
    "lambda_z_t_last": ("time", "Last time (after interval start) used for lambda_z"),
    "r_squared": ("1", "R-squared of the lambda_z regression"),
    "adj_r_squared": ("1", "Adjusted R-squared of the lambda_z regression"),
    "span_ratio": ("1", "Span ratio: time span of lambda_z points / half-life"),
    "half_life": ("time", "Terminal half-life ln2/lambda_z"),
    "vz_ss": ("volume", "Terminal volume at steady state (Vz/F) Dose/(lambda_z*AUCtau)"),
    "nca_flags": ("flags", "Semicolon-separated NCA flags (see insilico.analysis.nca.FLAGS)"),
}

FLAGS: dict[str, str] = {
    "no_data": "no usable concentration after the BLQ rule; every parameter is NaN",
    "no_positive_conc": "no concentration > 0: Tmax, Clast, Tlast and lambda_z-based parameters are NaN, AUClast is 0",
    "lambda_z_too_few_points": "fewer eligible terminal points (positive, after Tmax) than required; lambda_z is NaN",
    "lambda_z_not_positive": "no candidate regression gave lambda_z > 0; lambda_z is NaN",
    "no_dose": "dose not given: clearance and volumes are NaN",
    "c0_first_observed": "IV bolus: the first two concentrations do not decline, C0 set to the first positive one",
    "duplicate_time": "two samples share a time point (both used; Tmax is the first)",
    "span_ratio_low": "span ratio below min_span_ratio (warning only; values kept)",
    "auc_extrap_high": "AUC extrapolated beyond Tlast above max_auc_extrap_pct (warning only; values kept)",
    "interval_start_missing": "steady state: the interval start is not covered by samples; AUCtau and derived are NaN",
    "interval_end_missing": "steady state: the interval end is not covered by samples; AUCtau and derived are NaN",
    "interval_start_interpolated": "steady state: C at the interval start interpolated between neighbouring samples",
    "interval_end_interpolated": "steady state: C at the interval end interpolated between neighbouring samples",
}


def join_flags(n: int, flags: dict[str, np.ndarray]) -> list[str]:
    """One ``;``-separated string per row from ``{flag_name: bool array}``."""
    out = [[] for _ in range(n)]
    for name, mask in flags.items():
        for i in mask.nonzero()[0]:
            out[i].append(name)
    return [";".join(f) for f in out]
