"""Dosing regimens (NONMEM event semantics), per-subject dose tables, NONMEM data import and export."""
from insilico.dosing._nonmem import NonmemData, read_nonmem
from insilico.dosing._nonmem_write import nonmem_frame, write_nonmem, write_nonmem_csv
from insilico.dosing._regimen import Dose, Regimen
from insilico.dosing._rules import MAX_DOSES, MODELLED_RATES, check_dose
from insilico.dosing._table import DoseTable, dose_table, event_slots

__all__ = ["Dose", "Regimen", "MAX_DOSES", "MODELLED_RATES", "check_dose", "DoseTable", "dose_table", "event_slots",
           "NonmemData", "read_nonmem", "nonmem_frame", "write_nonmem", "write_nonmem_csv"]
