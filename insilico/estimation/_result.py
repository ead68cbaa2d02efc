"""The result of a fit: estimates with SE, RSE %, 95 % CI and correlations; OFV, AIC/BIC,
condition number, shrinkage; EBEs with their conditional covariance; per-observation
diagnostics; provenance. Opens as an xarray Dataset (`FitResult.to_dataset`), writes a fit
store (Zarr), NONMEM's ``.ext`` table, a JSON summary and the population model with its
estimates (YAML), which simulates a cohort or starts another fit.

Information criteria on NONMEM's OFV (no n_obs log 2 pi): AIC = OFV + 2 p, BIC = OFV + p log(n_obs),
p the number of estimated quantities. Condition number: ratio of the largest to the smallest
eigenvalue of the correlation matrix of the estimates (as NONMEM's PRINT=E).

Inter-occasion variability: a subject's random effects are the etas and one kappa block per
occasion (NONMEM's $OMEGA BLOCK SAME convention; `insilico.estimation._problem`). ``eta``,
``eta_cov`` and ``eta_shrinkage`` hold that whole vector; the dataset splits it into ``eta_hat``
(subject, eta) and ``kappa_hat`` (subject, occasion, kappa), the EBE of each kappa per subject and
occasion, with their conditional covariances and shrinkages. The .ext table writes NONMEM's
expanded OMEGA: Omega, then Omega_IOV once per occasion (SAME blocks repeat the values).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from insilico.population import SIGMA_FIELDS
from insilico.versions import package_versions

__all__ = ["FitResult"]

_PACKAGES = ("insilico", "jax", "diffrax", "numpyro", "optimistix", "scipy", "numpy", "xarray")
METHOD_TITLES = {"focei": "First Order Conditional Estimation with Interaction",
                 "laplace": "Laplacian Conditional Estimation with Interaction",
                 "nuts": "NUTS Bayesian Analysis"}


@dataclass(frozen=True)
class FitResult:
    """A fit (see module docstring). Vectors over ``names`` (every estimated or fixed quantity,
    natural scale); ``covariance`` over the estimated (not fixed) ones, or None when the
    covariance step failed or was not run. Per-observation arrays are (subjects, T) with NaN
    where no observation was fitted."""

    method: str
    names: tuple
    kinds: tuple
    estimates: np.ndarray
    fixed: np.ndarray
    covariance: np.ndarray | None
    ofv: float
    converged: bool
    message: str
    covariance_message: str
    iterations: int
    seconds: float
    ids: np.ndarray
    bsv_names: tuple
    eta: np.ndarray
    eta_cov: np.ndarray
    eta_status: np.ndarray
    ofv_subject: np.ndarray
    times: np.ndarray
    dv: np.ndarray
    residuals: dict
    eta_shrinkage: np.ndarray
    eps_shrinkage: float
    n_observations: int
    spec: dict
    excluded: dict = field(default_factory=dict)
    data_sha256: str = ""
    extra: dict = field(default_factory=dict)
    covariates: object = None      # pandas DataFrame: the data's covariates, one row per fitted subject

    # -- derived figures -------------------------------------------------------------------------
    @property
    def n_subjects(self) -> int:
        return int(len(self.ids))

    @property
    def iov_names(self) -> tuple:
        """Parameters with inter-occasion variability (the spec's ``iov`` order), () without IOV."""
        iov = self.spec.get("iov") or {}
        return tuple(iov.get("variance") or iov.get("cv_percent") or ())

    @property
    def occasions(self) -> int:
        """Number of occasions (0 without IOV)."""
        return int((self.spec.get("iov") or {}).get("occasions", 0)) if self.iov_names else 0

    def _kappa_slice(self, a: np.ndarray, axis: int) -> np.ndarray:
        """The kappa part of ``a`` along ``axis`` (the random-effect vector), as (occasion, kappa) axes."""
        b = len(self.bsv_names)
        part = np.take(a, np.arange(b, b + self.occasions * len(self.iov_names)), axis=axis)
        return part.reshape(part.shape[:axis] + (self.occasions, len(self.iov_names)) + part.shape[axis + 1:])

    @property
    def kappa(self) -> np.ndarray:
        """EBEs of the kappas (subjects, occasions, IOV parameters); empty without IOV."""
        return self._kappa_slice(np.asarray(self.eta), 1)

    @property
    def kappa_cov(self) -> np.ndarray:
        """Conditional covariance of each occasion's kappas (subjects, occasions, n_iov, n_iov)."""
        b, m, k = len(self.bsv_names), len(self.iov_names), self.occasions
        cov = np.asarray(self.eta_cov)
        out = np.zeros((cov.shape[0], k, m, m))
        for o in range(k):
            s = slice(b + o * m, b + (o + 1) * m)
            out[:, o] = cov[:, s, s]
        return out

    @property
    def n_estimated(self) -> int:
        return int((~self.fixed).sum())

    @property
    def aic(self) -> float:
        return self.ofv + 2 * self.n_estimated

    @property
    def bic(self) -> float:
        return self.ofv + self.n_estimated * np.log(self.n_observations)

    @property
    def se(self) -> np.ndarray:
        """Standard errors (NaN for fixed quantities or without a covariance step)."""
        out = np.full(len(self.names), np.nan)
        if self.covariance is not None:
            out[~self.fixed] = np.sqrt(np.maximum(np.diag(self.covariance), 0.0))
        return out

    @property
    def rse_percent(self) -> np.ndarray:
        return 100.0 * self.se / np.abs(self.estimates)

    @property
    def ci95(self) -> tuple[np.ndarray, np.ndarray]:
        """Wald 95 % interval estimate +- 1.959964 SE."""
        z = 1.959963984540054
        return self.estimates - z * self.se, self.estimates + z * self.se

    @property
    def correlation(self) -> np.ndarray | None:
        if self.covariance is None:
            return None
        sd = np.sqrt(np.diag(self.covariance))
        return self.covariance / np.outer(sd, sd)

    @property
    def condition_number(self) -> float:
        c = self.correlation
        if c is None or c.size == 0:
            return float("nan")
        ev = np.linalg.eigvalsh(c)
        return float(ev.max() / ev.min()) if ev.min() > 0 else float("inf")

    def estimate(self, name: str) -> float:
        return float(self.estimates[self.names.index(name)])

    # -- outputs ---------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The machine-readable summary printed by ``insilico fit --json``."""
        se = self.se
        return {"method": self.method, "ofv": self.ofv if np.isfinite(self.ofv) else None,
                "converged": self.converged,
                "estimates": {n: float(v) for n, v in zip(self.names, self.estimates)},
                "se": {n: (None if not np.isfinite(s) else float(s)) for n, s in zip(self.names, se)},
                "n_subjects": self.n_subjects, "n_observations": self.n_observations}

    def to_dataset(self) -> xr.Dataset:
        """Everything as one xarray Dataset (dims ``param``, ``subject``, ``eta``, ``obs``; the data's
        covariates as ``covariates (subject, covariate)`` and, for text columns,
        ``covariate_text (subject, covariate_text_name)``)."""
        lo, hi = self.ci95
        p = len(self.names)
        cov = np.full((p, p), np.nan)
        free = np.flatnonzero(~self.fixed)
        if self.covariance is not None:
            cov[np.ix_(free, free)] = self.covariance
        sd = np.sqrt(np.diag(cov))
        b = len(self.bsv_names)
        eta_names = [f"ETA({i + 1})" for i in range(b)]
        eta, eta_cov = np.asarray(self.eta)[:, :b], np.asarray(self.eta_cov)[:, :b, :b]
        data = {
            "estimate": (("param",), self.estimates, {"long_name": "estimate (natural scale)"}),
            "se": (("param",), self.se, {"long_name": "standard error"}),
            "rse": (("param",), self.rse_percent, {"units": "%", "long_name": "relative standard error"}),
            "ci_lower": (("param",), lo, {"long_name": "95 % Wald interval, lower"}),
            "ci_upper": (("param",), hi, {"long_name": "95 % Wald interval, upper"}),
            "fixed": (("param",), self.fixed),
            "kind": (("param",), np.asarray(self.kinds, dtype=str)),
            "covariance": (("param", "param2"), cov, {"long_name": "covariance of the estimates"}),
            "correlation": (("param", "param2"), cov / np.outer(sd, sd), {"long_name": "correlation of the estimates"}),
            "eta_hat": (("subject", "eta"), eta, {"long_name": "empirical Bayes estimate (conditional mode)"}),
            "eta_cov": (("subject", "eta", "eta2"), eta_cov,
                        {"long_name": "conditional covariance of the EBE"}),
            "eta_status": (("subject",), self.eta_status,
                           {"flag_values": [0, 1, 2], "flag_meanings": "ok not_converged solver_failed"}),
            "ofv_subject": (("subject",), self.ofv_subject, {"long_name": "subject's OFV contribution"}),
            "eta_shrinkage": (("eta",), np.asarray(self.eta_shrinkage)[:b], {"long_name": "ETA shrinkage (SD based)"}),
            "time": (("subject", "obs"), self.times, {"units": "h", "long_name": "time"}),
            "DV": (("subject", "obs"), self.dv, {"long_name": "observation"}),
        }
        for k, v in self.residuals.items():
            data[k] = (("subject", "obs"), v)
        coords = {"param": list(self.names), "param2": list(self.names), "subject": self.ids, "eta": eta_names,
                  "eta2": eta_names, "eta_parameter": ("eta", list(self.bsv_names))}
        if self.iov_names:
            kappa_names = [f"KAPPA({j + 1})" for j in range(len(self.iov_names))]
            coords.update({"occasion": np.arange(1, self.occasions + 1), "kappa": kappa_names, "kappa2": kappa_names,
                           "kappa_parameter": ("kappa", list(self.iov_names))})
            data["kappa_hat"] = (("subject", "occasion", "kappa"), self.kappa,
                                 {"long_name": "empirical Bayes estimate of the inter-occasion effect per occasion"})
            data["kappa_cov"] = (("subject", "occasion", "kappa", "kappa2"), self.kappa_cov,
                                 {"long_name": "conditional covariance of the kappa EBEs of an occasion"})
            data["kappa_shrinkage"] = (("occasion", "kappa"), self._kappa_slice(np.asarray(self.eta_shrinkage), 0),
                                       {"long_name": "KAPPA shrinkage per occasion (SD based, 1 - SD(EBE)/omega_iov)"})
        ds = xr.Dataset(data, coords=coords)
        ds.attrs.update({
            "method": self.method, "ofv": self.ofv, "aic": self.aic, "bic": self.bic,
            "converged": int(self.converged), "message": self.message,
            "covariance_step": self.covariance_message, "condition_number": self.condition_number,
            "eps_shrinkage": self.eps_shrinkage, "iterations": self.iterations, "seconds": self.seconds,
            "n_subjects": self.n_subjects, "n_observations": self.n_observations,
            "excluded": json.dumps({str(k): v for k, v in self.excluded.items()}),
            "population_model": json.dumps(self.population_model()), "spec": json.dumps(self.spec),
            "data_sha256": self.data_sha256, "versions": json.dumps(package_versions(_PACKAGES)),
            "ofv_convention": "NONMEM: -2 log L without the n_obs log(2 pi) constant",
        })
        if self.covariates is not None and len(self.covariates.columns):
            num = [c for c in self.covariates.columns if pd.api.types.is_numeric_dtype(self.covariates[c])]
            text = [c for c in self.covariates.columns if c not in num]
            if num:
                ds["covariates"] = (("subject", "covariate"), self.covariates[num].to_numpy(float),
                                    {"long_name": "the data's numeric covariates (first value per subject)"})
                ds = ds.assign_coords(covariate=num)
            if text:
                ds["covariate_text"] = (("subject", "covariate_text_name"),
                                        self.covariates[text].astype(str).to_numpy(),
                                        {"long_name": "the data's non-numeric covariates"})
                ds = ds.assign_coords(covariate_text_name=text)
        for k, v in self.extra.items():
            if k == "draws":
                ds["posterior"] = (("chain", "draw", "param"), v, {"long_name": "posterior draws (natural scale)"})
            elif isinstance(v, np.ndarray):
                ds[k] = (("param",), v)
            else:
                ds.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
        return ds

    def population_model(self) -> dict:
        """The population model (spec mapping) with the estimates as its values."""
        spec = json.loads(json.dumps(self.spec))
        values = dict(zip(self.names, (float(v) for v in self.estimates)))
        for name, par in spec["parameters"].items():
            par["typical"] = values[name]
            for e in par.get("effects", []):
                if e["type"] == "categorical":
                    e["multipliers"] = {lab: values[f"{name}.{e['covariate']}[{lab}]"] for lab in e["multipliers"]}
                else:
                    e["theta"] = values[f"{name}.{e['covariate']}"]
        if spec.get("bsv"):
            k = len(spec["bsv"]["parameters"])
            om = np.zeros((k, k))
            for n, v in values.items():
                if n.startswith("OMEGA("):
                    i, j = (int(x) - 1 for x in n[6:-1].split(","))
                    om[i, j] = om[j, i] = v
            spec["bsv"] = {"parameters": spec["bsv"]["parameters"], "omega": om.tolist()}
        if self.iov_names:
            iov = {k: v for k, v in spec["iov"].items() if k not in ("variance", "cv_percent")}
            spec["iov"] = {**iov, "variance": {n: values[f"OMEGA_IOV({j + 1},{j + 1})"]
                                               for j, n in enumerate(self.iov_names)}}
        primary = spec.get("output", "conc")
        others = [o for o in dict.fromkeys(spec.get("outputs", {}).get(k) for k in sorted(spec.get("outputs", {}),
                                                                                        key=int)) if o != primary]
        k = 0
        for r in [spec["residual_error"], *(spec["residual_errors"][o] for o in others)]:   # SIGMA order
            for f in SIGMA_FIELDS[r["type"]]:     # the one naming convention (combined1: like combined)
                k += 1
                r[f] = float(np.sqrt(values[f"SIGMA({k},{k})"]))
        return spec

    def write_ext(self, path) -> None:
        """NONMEM's ``.ext`` table: final estimates (ITERATION -1000000000) and standard errors
        (-1000000001; 1E+10 where there is none, as NONMEM writes for fixed ones), columns
        THETA1..n (typical values and effects in population-model order),
        SIGMA(i,j) and OMEGA(i,j) (lower triangles), OBJ. With IOV, OMEGA is NONMEM's expanded
        matrix diag(Omega, Omega_IOV, ..., Omega_IOV) (one SAME block per occasion, values and SEs
        repeated; module docstring). SIGMA(k,k) are the squared residual SDs of
        `insilico.population.SIGMA_FIELDS`; for a ``combined1`` model (SD = a + b f) they are b^2 and
        a^2, the squares of the THETAs of NONMEM's ``W = THETA(b)*IPRED + THETA(a)`` with
        ``$SIGMA 1 FIX``."""
        vals = dict(zip(self.names, self.estimates))
        ses = dict(zip(self.names, self.se))
        thetas = [n for n, k in zip(self.names, self.kinds) if k in ("typical", "effect", "multiplier")]
        n_sig = sum(1 for k in self.kinds if k == "sigma")
        k_eta = len(self.bsv_names)
        m = len(self.iov_names)
        k_all = k_eta + self.occasions * m

        def omega_key(i, j):      # expanded OMEGA (1-based) -> the estimated quantity, or "" (a zero)
            if i <= k_eta:
                return f"OMEGA({i},{j})"
            q = (i - k_eta - 1) % m + 1       # Omega_IOV is diagonal: only the diagonal of each SAME block
            return f"OMEGA_IOV({q},{q})" if i == j else ""

        cols = [(f"THETA{i + 1}", t) for i, t in enumerate(thetas)]
        cols += [(f"SIGMA({i},{j})", f"SIGMA({i},{j})") for i in range(1, n_sig + 1) for j in range(1, i + 1)]
        cols += [(f"OMEGA({i},{j})", omega_key(i, j)) for i in range(1, k_all + 1) for j in range(1, i + 1)]
        title = METHOD_TITLES.get(self.method, self.method)
        lines = [f"TABLE NO.     1: {title}: Goal Function=MINIMUM VALUE OF OBJECTIVE FUNCTION: Problem=1 "
                 "Subproblem=0 Superproblem1=0 Iteration1=0 Superproblem2=0 Iteration2=0",
                 " ITERATION    " + "    ".join(c for c, _ in cols) + "    OBJ"]

        def row(it, source, obj, missing=0.0):
            nums = [source.get(key, 0.0) if key else 0.0 for _, key in cols]
            nums = [missing if not np.isfinite(v) else float(v) for v in nums]
            return f" {it:>11d}" + "".join(f" {v:14.6E}" for v in nums) + f" {obj:14.6E}"

        lines.append(row(-1000000000, vals, self.ofv))
        lines.append(row(-1000000001, ses, 0.0, missing=1e10))   # NONMEM: 1E+10 for fixed quantities
        Path(path).write_text("\n".join(lines) + "\n")
