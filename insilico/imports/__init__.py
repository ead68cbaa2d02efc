"""Importing models written for other tools. NONMEM control streams (through pharmpy-core):
:func:`import_nonmem` translates one into an insilico population model, :func:`write_import`
writes ``population.yaml``, ``nonmem_names.yaml`` and ``untranslated.txt``; :func:`read_ext`
and :func:`read_phi` read NONMEM's final estimates and EBEs."""
from insilico.imports._nonmem import ADVANS, NonmemImport, import_nonmem
from insilico.imports._tables import read_ext, read_phi
from insilico.imports._write import write_import

__all__ = ["ADVANS", "NonmemImport", "import_nonmem", "read_ext", "read_phi", "write_import"]
