"""Per-subject status codes stored with every simulation (``status`` variable).

Codes 1–4 are set by the engine while solving (`MEANINGS`). Codes 5–7 are set before solving,
by a trial, for a virtual subject whose own inputs are invalid (`INPUT_MEANINGS`): that subject
is not simulated and the trial goes on. A trial store's ``status`` carries both
(`TRIAL_MEANINGS`) as CF ``flag_values`` / ``flag_meanings``.
"""
OK = 0
MAX_STEPS = 1          # ODE solver hit max_steps in some interval, or steady-state Newton hit ss_max_iter
NONFINITE = 2          # a state or output became NaN/inf
SOLVER_FAILED = 3      # any other solver failure (step size collapsed; no attracting steady state)
ILL_CONDITIONED = 4    # exact path: (nearly) repeated eigenvalues; `simulate` re-solves these on the ODE path
INVALID_COVARIATE = 5  # a covariate of the subject is NaN or infinite
INVALID_DOSE_SCALE = 6  # a dose is `per` a covariate (mg/kg × WT) that is not finite and > 0 for the subject
INVALID_PARAMETER = 7  # an individual parameter is non-finite or outside its constraint (e.g. CL <= 0)

MEANINGS = {
    OK: "ok",
    MAX_STEPS: "max_steps reached",
    NONFINITE: "non-finite value",
    SOLVER_FAILED: "solver failure",
    ILL_CONDITIONED: "repeated eigenvalues (exact path ill-conditioned)",
}

INPUT_MEANINGS = {
    INVALID_COVARIATE: "covariate not finite",
    INVALID_DOSE_SCALE: "dose covariate not positive",
    INVALID_PARAMETER: "invalid individual parameter",
}

TRIAL_MEANINGS = {**MEANINGS, **INPUT_MEANINGS}
