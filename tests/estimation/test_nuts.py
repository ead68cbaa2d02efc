"""NUTS on the hierarchical model: converges (R-hat, no divergences) and agrees with FOCE-I on a
well-identified model."""
from __future__ import annotations

import numpy as np
import pytest

from insilico.estimation import NUTS, fit
from tests.estimation.conftest import oral_data

MODEL = """
model: {name: 1cmt_oral}
parameters: {CL: {typical: 2.5}, V: {typical: 25}, KA: {typical: 1.0}}
bsv: {parameters: [CL, V], variance: [0.1, 0.1]}
residual_error: {type: proportional, proportional: 0.15}
"""


@pytest.fixture(scope="module")
def both():
    df, _ = oral_data(16, seed=5)
    df["WT"] = 70.0       # no covariate effect in this model: CL at WT 70 is the truth
    return fit(MODEL, df, "focei", npde_samples=0), fit(MODEL, df, NUTS(chains=4, warmup=400, samples=400, seed=1))


def test_nuts_converges_and_reports_its_diagnostics(both):
    _, bayes = both
    ds = bayes.to_dataset()
    assert ds.posterior.shape == (4, 400, len(bayes.names))
    assert ds.attrs["parameterization"] == "centred"      # 8 samples per subject: informative
    assert np.nanmax(ds.rhat.values) <= 1.01
    assert int(ds.attrs["divergences"]) == 0 and bayes.converged
    assert np.nanmin(ds.ess_bulk.values) > 100 and np.nanmin(ds.ess_tail.values) > 100


def test_nuts_posterior_means_agree_with_focei(both):
    ml, bayes = both
    for name in ("CL", "V", "KA", "SIGMA(1,1)"):
        a, b = ml.estimate(name), bayes.estimate(name)
        se = ml.se[ml.names.index(name)]
        # same data, weak priors: posterior mean within one FOCE-I SE of the ML estimate
        assert abs(a - b) < se, (name, a, b, se)
    for name in ("OMEGA(1,1)", "OMEGA(2,2)"):   # variances: the posterior mean sits above the mode (skewed)
        a, b = ml.estimate(name), bayes.estimate(name)
        assert abs(a - b) < 1.5 * ml.se[ml.names.index(name)], (name, a, b)
