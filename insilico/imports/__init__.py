"""Importing models written for other tools. NONMEM control streams (through pharmpy-core):
:func:`import_nonmem` translates one into an insilico population model (built-in models for
ADVAN1-4/11/12, a text-equation model for ADVAN6/13 $DES), :func:`write_import` writes
``population.yaml``, ``nonmem_names.yaml``, ``untranslated.txt``, the text model file and
``covariance.yaml``; :func:`read_ext`, :func:`read_phi` and :func:`read_cov` read NONMEM's final
estimates, EBEs and covariance matrix of the estimates."""
from insilico.imports._nonmem import ADVANS, GENERAL_ADVANS, NonmemImport, covariance_of, import_nonmem
from insilico.imports._tables import read_cov, read_ext, read_phi
from insilico.imports._write import COVARIANCE_FILE, write_import

__all__ = ["ADVANS", "COVARIANCE_FILE", "GENERAL_ADVANS", "NonmemImport", "covariance_of", "import_nonmem",
           "read_cov", "read_ext", "read_phi", "write_import"]
