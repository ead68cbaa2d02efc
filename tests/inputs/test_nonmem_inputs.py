"""NONMEM data never changed silently: every problem a SpecError naming column and 1-based row."""
from __future__ import annotations

import numpy as np
import pytest

from insilico.dosing import read_nonmem
from insilico.errors import SpecError
from insilico.models import get_model

GOOD = ("ID,TIME,AMT,EVID,II,ADDL,DV\n1,0,100,1,12,2,.\n1,1,0,0,0,0,1.5\n1,4,0,0,0,0,0.9\n"
        "2,0,50,1,0,0,.\n2,2,0,0,0,0,0.7\n")


def _read(tmp_path, text: str | bytes):
    p = tmp_path / "data.csv"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_nonmem(p, get_model("1cmt_oral"))


def _refused(tmp_path, text, field, words):
    with pytest.raises(SpecError) as e:
        _read(tmp_path, text)
    assert e.value.field == field and words in e.value.message, str(e.value)


def test_good_file_reads(tmp_path):
    d = _read(tmp_path, GOOD)
    assert list(d.ids) == [1, 2] and d.regimens[0].doses[0].addl == 2


def test_missing_id(tmp_path):
    _refused(tmp_path, GOOD.replace("\n2,2,0", "\n.,2,0"), "data.ID", "row 5")


def test_time_going_backwards(tmp_path):
    _refused(tmp_path, GOOD.replace("1,4,0,0", "1,0.5,0,0"), "data.TIME", "row 3")


def test_fractional_addl(tmp_path):
    _refused(tmp_path, GOOD.replace("1,0,100,1,12,2", "1,0,100,1,12,1.5"), "data.ADDL",
             "row 1: ADDL must be an integer")


def test_infinite_time(tmp_path):
    _refused(tmp_path, GOOD.replace("1,4,0,0", "1,inf,0,0"), "data.TIME", "row 3: TIME must be a finite number")


def test_nan_amount(tmp_path):
    _refused(tmp_path, GOOD.replace("2,0,50", "2,0,nan"), "data.AMT", "row 4")


def test_non_numeric_dv(tmp_path):
    _refused(tmp_path, GOOD.replace("1.5", "BLQ"), "data.DV", "row 2")


def test_empty_file(tmp_path):
    _refused(tmp_path, "", "data", "empty")


def test_header_only(tmp_path):
    _refused(tmp_path, "ID,TIME\n", "data", "no records")


def test_columns_differing_only_in_case(tmp_path):
    _refused(tmp_path, GOOD.replace("ID,TIME,AMT", "ID,TIME,time"), "data.TIME", "differ only in case")


def test_utf16_file(tmp_path):
    _refused(tmp_path, GOOD.encode("utf-16"), "data", "UTF-16")


def test_binary_file(tmp_path):
    _refused(tmp_path, b"PK\x03\x04\x00\x00binary", "data", "binary")


def test_id_reappearing(tmp_path):
    _refused(tmp_path, GOOD + "1,8,0,0,0,0,0.2\n", "data.ID", "row 6")


def test_missing_evid(tmp_path):
    _refused(tmp_path, GOOD.replace("1,1,0,0,0,0,1.5", "1,1,0,.,0,0,1.5"), "data.EVID", "row 2")


def test_dot_in_ii_and_addl_is_nmtran_zero(tmp_path):
    """NM-TRAN reads a lone '.' as 0: a single dose, no interval."""
    d = _read(tmp_path, GOOD.replace("2,0,50,1,0,0", "2,0,50,1,.,."))
    dose = d.regimens[1].doses[0]
    assert (dose.ii, dose.addl, dose.amt) == (0.0, 0, 50.0)


def test_dot_in_dv_is_missing(tmp_path):
    d = _read(tmp_path, GOOD.replace("0.9", "."))
    assert np.isnan(d.dv[0, 1]) and d.observed[0, 1]


def test_model_given_by_name(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text(GOOD)
    assert read_nonmem(p, "1cmt_oral").doses.amt.shape[0] == 2


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(SpecError, match="directory"):
        read_nonmem(tmp_path, get_model("1cmt_oral"))
