"""Derived covariates vs hand-computed values (formulas written out independently)."""
import math

import numpy as np
import pytest

from insilico.cohorts import bmi, bsa_mosteller, crcl_cockcroft_gault, egfr_ckd_epi_2021, lbw_janmahasatian


def test_bmi_bsa():
    assert float(bmi(70.0, 175.0)) == pytest.approx(22.857142857142858, rel=1e-14)
    # Mosteller: sqrt(175 * 70 / 3600)
    assert float(bsa_mosteller(70.0, 175.0)) == pytest.approx(1.8446619684315546, rel=1e-14)


def test_lbw_janmahasatian():
    # 9270 * 70 / (6680 + 216 * 22.857...) and 9270 * 70 / (8780 + 244 * 22.857...)
    assert float(lbw_janmahasatian(70.0, 175.0, False)) == pytest.approx(55.857107722577474, rel=1e-13)
    assert float(lbw_janmahasatian(70.0, 175.0, True)) == pytest.approx(45.19701492537313, rel=1e-13)


def test_cockcroft_gault():
    # (140 - 40) * 70 / (72 * 1.0) = 97.22 mL/min; women x 0.85
    assert float(crcl_cockcroft_gault(40.0, 70.0, 1.0, False)) == pytest.approx(97.22222222222223, rel=1e-14)
    assert float(crcl_cockcroft_gault(40.0, 70.0, 1.0, True)) == pytest.approx(82.63888888888889, rel=1e-14)
    # 80 y, 60 kg, SCR 2.0: 60 * 60 / 144 = 25 mL/min
    assert float(crcl_cockcroft_gault(80.0, 60.0, 2.0, False)) == pytest.approx(25.0, rel=1e-14)


@pytest.mark.parametrize("age, scr, female, expected", [
    (50.0, 1.0, False, 142 * (1.0 / 0.9) ** -1.200 * 0.9938 ** 50),          # above kappa (male)
    (50.0, 0.7, False, 142 * (0.7 / 0.9) ** -0.302 * 0.9938 ** 50),          # below kappa (male)
    (60.0, 0.6, True, 142 * (0.6 / 0.7) ** -0.241 * 0.9938 ** 60 * 1.012),   # below kappa (female)
    (60.0, 1.2, True, 142 * (1.2 / 0.7) ** -1.200 * 0.9938 ** 60 * 1.012),   # above kappa (female)
    (40.0, 0.9, False, 142 * 0.9938 ** 40),                                   # at kappa
])
def test_ckd_epi_2021(age, scr, female, expected):
    assert float(egfr_ckd_epi_2021(age, scr, female)) == pytest.approx(expected, rel=1e-13)


def test_ckd_epi_2021_published_magnitude():
    # 50-year-old man, SCr 1.0 mg/dL: ~92 mL/min/1.73m2 with the 2021 equation
    assert round(float(egfr_ckd_epi_2021(50.0, 1.0, False))) == 92


def test_derived_in_cohort_match_formulas(healthy_100):
    ds = healthy_100
    female = ds.SEX.values == ds.SEX.attrs["flag_meanings"].split().index("female")
    age, wt, ht, scr = (ds[v].values for v in ("AGE", "WT", "HT", "SCR"))
    np.testing.assert_allclose(ds.WT.values, ds.BMI.values * (ht / 100) ** 2, rtol=1e-13)
    np.testing.assert_allclose(ds.BSA.values, np.sqrt(ht * wt / 3600), rtol=1e-13)
    np.testing.assert_allclose(ds.CRCL.values, (140 - age) * wt / (72 * scr) * np.where(female, 0.85, 1), rtol=1e-13)
    k = np.where(female, 0.7, 0.9)
    a = np.where(female, -0.241, -0.302)
    egfr = (142 * np.minimum(scr / k, 1) ** a * np.maximum(scr / k, 1) ** -1.2 * 0.9938 ** age
            * np.where(female, 1.012, 1))
    np.testing.assert_allclose(ds.EGFR.values, egfr, rtol=1e-12)
    bmi_ = wt / (ht / 100) ** 2
    lbw = np.where(female, 9270 * wt / (8780 + 244 * bmi_), 9270 * wt / (6680 + 216 * bmi_))
    np.testing.assert_allclose(ds.LBW.values, lbw, rtol=1e-12)
    assert ds.CRCL.attrs["units"] == "mL/min" and ds.EGFR.attrs["units"] == "mL/min/(1.73*m**2)"
    assert not math.isnan(float(ds.CRCL.mean()))
