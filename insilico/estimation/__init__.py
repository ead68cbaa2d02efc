"""Population estimation: FOCE-I / Laplace maximum likelihood and NUTS on the shared
population model (`insilico.population`), the engine and NONMEM-format data.

    from insilico.estimation import fit
    result = fit("population.yaml", "data.csv", method="focei")   # -> FitResult
    ds = result.to_dataset()                                        # estimates, EBEs, CWRES, NPDE ...

Building blocks for other consumers (patient twins): `build_problem` (population model + data
-> padded per-subject arrays), `individual_objective` (-2 log p(y, eta)), `eta_mode` (the EBE by
Newton), `subject_ofv` (Laplace / FOCE-I contribution of one subject).
"""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.estimation._fit import fit
from insilico.estimation._methods import FOCEI, NUTS, Laplace, method_from
from insilico.estimation._objective import LOG_2PI, eta_mode, individual_objective, subject_ofv
from insilico.estimation._problem import Problem, build_problem
from insilico.estimation._result import FitResult
from insilico.estimation._spec import EstimateSpec, PopulationModelSpec, load_population_model
from insilico.estimation._vpc import assign_bins, bin_edges, prediction_correct, vpc

__all__ = ["FOCEI", "NUTS", "EstimateSpec", "FitResult", "Laplace", "PopulationModelSpec", "Problem", "build_problem",
           "LOG_2PI", "eta_mode", "fit", "individual_objective", "load_population_model", "method_from",
           "subject_ofv", "assign_bins", "bin_edges", "prediction_correct", "vpc"]
