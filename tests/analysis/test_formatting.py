"""`format_value`: the one number format of CLI tables and the HTML report."""
import numpy as np
import pandas as pd
import pytest

from insilico.analysis import format_value


@pytest.mark.parametrize("value, text", [
    (None, "–"), (pd.NA, "–"), (float("nan"), "–"), (np.float32("nan"), "–"),
    (float("inf"), "∞"), (-np.inf, "−∞"), (True, "yes"), (np.bool_(False), "no"),
    (0.0, "0"), (1.0, "1"), (12.34567, "12.35"), (np.float64(0.0123456), "0.01235"),
    (0.000123456, "0.000123"), (-2.5e-7, "-2.5e-07"), (999999.4, "1e+06"), (1234567.0, "1.23e+06"),
    (42, "42"), (np.int64(-3), "-3"), ("100 mg qd", "100 mg qd"),
])
def test_format_value(value, text):
    assert format_value(value) == text
