"""Per-subject status codes stored with every simulation (``status`` variable)."""
OK = 0
MAX_STEPS = 1          # ODE solver hit max_steps in some interval, or steady-state Newton hit ss_max_iter
NONFINITE = 2          # a state or output became NaN/inf
SOLVER_FAILED = 3      # any other solver failure (step size collapsed; no attracting steady state)
ILL_CONDITIONED = 4    # exact path: (nearly) repeated eigenvalues; `simulate` re-solves these on the ODE path

MEANINGS = {
    OK: "ok",
    MAX_STEPS: "max_steps reached",
    NONFINITE: "non-finite value",
    SOLVER_FAILED: "solver failure",
    ILL_CONDITIONED: "repeated eigenvalues (exact path ill-conditioned)",
}
