"""Importing models written for other tools. NONMEM control streams (through pharmpy-core):
:func:`import_nonmem` translates one into an insilico population model (built-in models for
ADVAN1-4/11/12 TRANS1/2/4, the same built-ins in NONMEM's TRANS3/5/6 parameters
(:func:`trans_model`, :func:`micro_constants`), a text-equation model for ADVAN6/13 $DES), :func:`write_import` writes
``population.yaml``, ``nonmem_names.yaml``, ``untranslated.txt``, the text model file and
``covariance.yaml``; :func:`read_ext`, :func:`read_phi` and :func:`read_cov` read NONMEM's final
estimates, EBEs and covariance matrix of the estimates. Inter-occasion variability (``$OMEGA BLOCK SAME`` with
occasion indicators in $PK) -> the ``iov`` section (`insilico.imports._iov`); :func:`nonmem_random_effects` orders
NONMEM's ETAs as insilico's random-effect vector."""
from insilico.imports._nonmem import (
    ADVANS,
    GENERAL_ADVANS,
    NonmemImport,
    covariance_of,
    import_nonmem,
    nonmem_random_effects,
)
from insilico.imports._tables import read_cov, read_ext, read_phi
from insilico.imports._trans import (
    TRANS_MODELS,
    advan3_trans3,
    advan3_trans5,
    advan3_trans6,
    advan4_trans3,
    advan4_trans5,
    advan4_trans6,
    advan11_trans6,
    advan12_trans6,
    micro_constants,
    trans_model,
)
from insilico.imports._write import COVARIANCE_FILE, write_import

__all__ = ["ADVANS", "COVARIANCE_FILE", "GENERAL_ADVANS", "NonmemImport", "TRANS_MODELS", "advan3_trans3",
           "advan3_trans5", "advan3_trans6", "advan4_trans3", "advan4_trans5", "advan4_trans6", "advan11_trans6",
           "advan12_trans6", "covariance_of", "import_nonmem", "micro_constants", "nonmem_random_effects",
           "read_cov", "read_ext", "read_phi",
           "trans_model", "write_import"]
