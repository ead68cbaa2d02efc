"""The `Model` description shared by built-in and user-defined models.

A model is a plain, immutable description: state names, parameters (with units and
constraints), dose-able compartments, outputs and a pure JAX vector field
``rhs(t, y, p) -> dy/dt``. ``y`` is a 1-D array over ``states``; ``p`` is a mapping from
parameter name to a scalar. Infusion input is *not* part of ``rhs``: the engine adds the
piecewise-constant infusion rate into the dosed compartment (NONMEM/mrgsolve convention),
so models stay free of dosing logic.

Linear models additionally provide ``system_matrix(p)`` (``dy/dt = K y + input``) and
``eigenvalues(p)`` (the eigenvalues of ``K`` in closed form); the engine then uses the
exact superposition solution instead of an ODE solver.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import jax.numpy as jnp
import numpy as np

from insilico.errors import SpecError

__all__ = ["PARAMETER_INFO", "Model", "Output", "PDModel", "Parameter", "ParameterInfo", "parameter_info"]


@dataclass(frozen=True)
class ParameterInfo:
    """Units (``insilico.units`` grammar) and long name of a standard parameter name."""

    units: str
    long_name: str


# The one table of standard parameter names: the built-in models declare their parameters from it
# and population models (cohorts, estimation, twins) take their default units and long names
# from it. Time in h, amounts in mg, volumes in L, concentrations in mg/L.
PARAMETER_INFO: dict[str, ParameterInfo] = {k: ParameterInfo(*v) for k, v in {
    # disposition
    "CL": ("L/h", "clearance"),
    "V": ("L", "volume of distribution"),
    "V1": ("L", "central volume"),
    "Q": ("L/h", "intercompartmental clearance (central - peripheral 1)"),
    "V2": ("L", "peripheral volume (peripheral 1)"),
    "Q3": ("L/h", "intercompartmental clearance (central - peripheral 2)"),
    "V3": ("L", "peripheral volume (peripheral 2)"),
    "KE": ("1/h", "elimination rate constant"),
    "VMAX": ("mg/h", "maximum elimination rate"),
    "KM": ("mg/L", "Michaelis-Menten constant"),
    # absorption
    "KA": ("1/h", "first-order absorption rate constant"),
    "KTR": ("1/h", "transit rate constant"),
    "F": ("1", "bioavailability"),
    "ALAG": ("h", "absorption lag time"),
    # pharmacodynamics
    "KE0": ("1/h", "effect-compartment equilibration rate constant"),
    "E0": ("1", "baseline effect"),
    "EMAX": ("1", "maximum effect (negative for inhibition)"),
    "EC50": ("mg/L", "concentration at half-maximal effect"),
    "SLOPE": ("L/mg", "slope"),
    "GAMMA": ("1", "exponent (Hill coefficient; feedback exponent of myelosuppression)"),
    "KIN": ("1/h", "zero-order production rate of the response (response units/h)"),
    "KOUT": ("1/h", "first-order loss rate constant of the response"),
    "IMAX": ("1", "maximum fractional inhibition (0 < IMAX <= 1)"),
    "IC50": ("mg/L", "concentration at half-maximal inhibition"),
    # target-mediated drug disposition: target and complex in drug-mass equivalents (mg/L)
    "KON": ("L/(mg*h)", "second-order drug-target association rate constant"),
    "KOFF": ("1/h", "drug-target complex dissociation rate constant"),
    "KINT": ("1/h", "drug-target complex internalisation rate constant"),
    "KSYN": ("mg/(L*h)", "target synthesis rate (drug-mass equivalents)"),
    "KDEG": ("1/h", "free target degradation rate constant"),
    "KSS": ("mg/L", "quasi-steady-state constant (KOFF + KINT)/KON"),
    # parent-metabolite: metabolite amounts in parent-mass equivalents (mg)
    "FM": ("1", "fraction of parent elimination forming the metabolite"),
    "CLM": ("L/h", "metabolite clearance"),
    "VM": ("L", "metabolite central volume"),
    "QM": ("L/h", "metabolite intercompartmental clearance"),
    "VM2": ("L", "metabolite peripheral volume"),
    "MWR": ("1", "metabolite-to-parent molar mass ratio"),
    # myelosuppression (Friberg 2002)
    "CIRC0": ("10**9/L", "baseline circulating cell count (ANC)"),
    "MTT": ("h", "mean transit time of maturing cells (KTR = 4/MTT)"),
    # tumour growth inhibition (Simeoni 2004)
    "W0": ("g", "initial tumour weight"),
    "LAMBDA0": ("1/h", "exponential tumour growth rate constant"),
    "LAMBDA1": ("g/h", "linear tumour growth rate"),
    "PSI": ("1", "sharpness of the exponential-to-linear growth switch"),
    "K1": ("1/h", "transit rate constant of damaged tumour cells"),
    "K2": ("L/(mg*h)", "drug potency on proliferating tumour cells"),
    # drug-drug interactions (victim + perpetrator models): concentrations unbound, mg/L
    "FM_E": ("1", "fraction of the victim's clearance by the affected enzyme (fm)"),
    "PERP_FU": ("1", "perpetrator fraction unbound in plasma"),
    "KI": ("mg/L", "reversible (competitive) inhibition constant, unbound"),
    "KINACT": ("1/h", "maximal enzyme inactivation rate constant (mechanism-based inhibition)"),
    "KI_MBI": ("mg/L", "perpetrator concentration at half-maximal inactivation, unbound"),
    "KDEG_E": ("1/h", "enzyme degradation rate constant (turnover)"),
    "EMAX_IND": ("1", "maximal fold increase of enzyme synthesis by induction"),
    "EC50_IND": ("mg/L", "perpetrator concentration at half-maximal induction, unbound"),
    "PERP_CL": ("L/h", "perpetrator clearance"),
    "PERP_V": ("L", "perpetrator volume of distribution"),
    "PERP_V1": ("L", "perpetrator central volume"),
    "PERP_Q": ("L/h", "perpetrator intercompartmental clearance (central - peripheral 1)"),
    "PERP_V2": ("L", "perpetrator peripheral volume (peripheral 1)"),
    "PERP_Q3": ("L/h", "perpetrator intercompartmental clearance (central - peripheral 2)"),
    "PERP_V3": ("L", "perpetrator peripheral volume (peripheral 2)"),
    "PERP_KA": ("1/h", "perpetrator first-order absorption rate constant"),
    "PERP_KTR": ("1/h", "perpetrator transit rate constant"),
    "PERP_F": ("1", "perpetrator bioavailability"),
    "PERP_ALAG": ("h", "perpetrator absorption lag time"),
    "PERP_VMAX": ("mg/h", "perpetrator maximum elimination rate"),
    "PERP_KM": ("mg/L", "perpetrator Michaelis-Menten constant"),
}.items()}


def parameter_info(name: str) -> ParameterInfo | None:
    """Units and long name of the standard parameter ``name`` (None if it is not standard)."""
    return PARAMETER_INFO.get(name)


@dataclass(frozen=True)
class Parameter:
    """A model parameter.

    ``constraint`` is one of ``"positive"`` (> 0), ``"nonnegative"`` (>= 0), ``"fraction"``
    (0 <= value <= 1) or ``"real"``.
    ``default`` is used when the parameter is not given (e.g. F = 1, ALAG = 0 h).
    """

    name: str
    units: str
    description: str
    constraint: str = "positive"
    default: float | None = None

    @classmethod
    def standard(cls, name: str, constraint: str = "positive", default: float | None = None) -> Parameter:
        """The parameter ``name`` with the units and long name of :data:`PARAMETER_INFO`."""
        info = PARAMETER_INFO[name]
        return cls(name, info.units, info.long_name, constraint, default)

    def check(self, value: np.ndarray, where: str) -> None:
        if not np.all(np.isfinite(value)):
            raise SpecError(where, f"must be finite, got {_first_bad(value, ~np.isfinite(value))}")
        if self.constraint == "positive" and np.any(value <= 0):
            raise SpecError(where, f"must be > 0 ({self.units}), got {_first_bad(value, value <= 0)}")
        if self.constraint == "nonnegative" and np.any(value < 0):
            raise SpecError(where, f"must be >= 0 ({self.units}), got {_first_bad(value, value < 0)}")
        if self.constraint == "fraction" and np.any((value < 0) | (value > 1)):
            raise SpecError(where, f"must be between 0 and 1, got {_first_bad(value, (value < 0) | (value > 1))}")


def _first_bad(value: np.ndarray, bad: np.ndarray) -> str:
    flat = np.atleast_1d(value)
    idx = int(np.flatnonzero(np.atleast_1d(bad))[0])
    return f"{flat[idx]!r}" if flat.size == 1 else f"{flat[idx]!r} (subject {idx})"


@dataclass(frozen=True)
class Output:
    """A model output computed from the state: ``fn(y, p) -> scalar``."""

    name: str
    units: str
    long_name: str
    fn: Callable


@dataclass(frozen=True, eq=False)
class PDModel:
    """A PD block, composed with a PK model by `compose`.

    ``rhs(t, y, p, c)`` and output functions ``fn(y, p, c)`` see ``y``, the PD part of the state,
    and ``c``, the driving concentration (mg/L). ``outputs`` are ``(name, units, long_name, fn)``;
    ``state_units`` default to ``"1"``; ``initial_state(p)`` gives the PD states at t = 0
    (default zeros)."""

    name: str
    states: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    outputs: tuple[tuple[str, str, str, Callable], ...]
    rhs: Callable | None = None
    initial_state: Callable | None = None
    description: str = ""
    state_units: tuple[str, ...] | None = None


@dataclass(frozen=True, eq=False)
class Model:
    """A PK/PD model. Built-ins and user models are the same class.

    Parameters
    ----------
    name : identifier (e.g. ``"2cmt_oral"``).
    states : state names; amounts in mg for PK compartments.
    state_units : units of each state.
    parameters : `Parameter` declarations.
    rhs : pure, JAX-traceable ``rhs(t, y, p) -> dy/dt``.
    outputs : `Output` declarations (e.g. ``conc = central / V`` in mg/L).
    dose_compartments : names of states that may receive doses (CMT).
    default_dose_compartment : the CMT used when a dose names none.
    initial_state : ``p -> y0`` (default zeros), e.g. an indirect-response baseline KIN/KOUT.
    bioavailability : ``p -> F`` per state (default ones); F scales bolus amounts and, for
        infusions given by rate, the infusion duration (NONMEM convention).
    lag : ``p -> ALAG`` per state in h (default zeros).
    system_matrix, eigenvalues : provided by linear models (exact path).
    """

    name: str
    states: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    rhs: Callable
    outputs: tuple[Output, ...]
    dose_compartments: tuple[str, ...]
    default_dose_compartment: str | None = None
    state_units: tuple[str, ...] | None = None
    initial_state: Callable | None = None
    bioavailability: Callable | None = None
    lag: Callable | None = None
    system_matrix: Callable | None = None
    eigenvalues: Callable | None = None
    description: str = ""
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if len(set(self.states)) != len(self.states):
            raise SpecError("model.states", f"duplicate state names in {self.states}")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise SpecError("model.parameters", f"duplicate parameter names in {names}")
        for c in self.dose_compartments:
            if c not in self.states:
                raise SpecError("model.dose_compartments", f"{c!r} is not a state of {self.name}")
        if self.default_dose_compartment is None and self.dose_compartments:
            object.__setattr__(self, "default_dose_compartment", self.dose_compartments[0])
        if self.state_units is None:
            object.__setattr__(self, "state_units", ("mg",) * len(self.states))

    # -- descriptive helpers -------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def is_linear(self) -> bool:
        """True when the exact (superposition) path applies."""
        return self.system_matrix is not None and self.eigenvalues is not None

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise SpecError(f"parameters.{name}", f"unknown parameter for model {self.name!r}")

    def compartment_index(self, cmt: str | int, where: str = "cmt") -> int:
        """Resolve a compartment given by name or by NONMEM number (1-based state index)."""
        if isinstance(cmt, (int, np.integer)) and not isinstance(cmt, bool):
            idx = int(cmt) - 1
            if not 0 <= idx < self.n_states:
                raise SpecError(where, f"compartment number {cmt} out of range 1..{self.n_states}")
            name = self.states[idx]
        else:
            name = str(cmt)
            if name not in self.states:
                raise SpecError(where, f"unknown compartment {name!r}; states are {list(self.states)}")
            idx = self.states.index(name)
        if name not in self.dose_compartments:
            raise SpecError(where, f"compartment {name!r} cannot be dosed; dose-able: "
                                   f"{list(self.dose_compartments)}")
        return idx

    def with_dose_parameters(self, *names: str) -> Model:
        """This model with the NONMEM modelled-infusion parameters ``names`` added (no default, > 0):
        ``R<n>`` (mg/h), the infusion rate of doses with RATE = −1 into compartment number ``n``
        (1-based state index), and ``D<n>`` (h), the duration of doses with RATE = −2 (NONMEM
        Users Guide Part V, "Infusions: modelled rate and duration"; with F, the duration of a
        RATE = −1 dose is ``F·AMT/R<n>`` and the rate of a RATE = −2 dose ``F·AMT/D<n>``). A model gains
        them only when its data need them; names the model already has are kept as they are."""
        new = []
        for name in names:
            kind, num = str(name)[:1], str(name)[1:]
            if kind not in ("R", "D") or not num.isdigit() or not 1 <= int(num) <= self.n_states:
                raise SpecError("model.parameters", f"{name!r} is not a modelled-infusion parameter: give R<n> "
                                                    f"(rate) or D<n> (duration), n a compartment number "
                                                    f"1..{self.n_states}")
            state = self.states[int(num) - 1]
            if state not in self.dose_compartments:
                raise SpecError("model.parameters", f"{name!r}: compartment {state!r} cannot be dosed")
            if name in self.parameter_names or name in [p.name for p in new]:
                continue
            units, what, code = ("mg/h", "rate", -1) if kind == "R" else ("h", "duration", -2)
            new.append(Parameter(name, units, f"modelled infusion {what} into {state} (NONMEM RATE={code})"))
        return replace(self, parameters=self.parameters + tuple(new)) if new else self

    # -- parameter validation ------------------------------------------------------------
    def validate_params(self, params: Mapping, n: int | None = None, where: str = "parameters") -> dict:
        """Check and complete a parameter mapping.

        Values may be scalars or 1-D arrays over subjects. Returns ``{name: float64 array}``
        broadcast to ``(n,)`` when ``n`` is given. Raises `SpecError` naming the parameter
        for unknown, missing, non-finite or out-of-constraint values.
        """
        known = set(self.parameter_names)
        for key in params:
            if key not in known:
                raise SpecError(f"{where}.{key}", f"unknown parameter for model {self.name!r}; "
                                                  f"known: {sorted(known)}")
        out = {}
        for par in self.parameters:
            if par.name in params:
                try:
                    value = np.asarray(params[par.name], dtype=np.float64)
                except (TypeError, ValueError):
                    raise SpecError(f"{where}.{par.name}", f"must be a number, got {params[par.name]!r}") from None
            elif par.default is not None:
                value = np.asarray(par.default, dtype=np.float64)
            else:
                raise SpecError(f"{where}.{par.name}", f"missing (model {self.name!r} needs "
                                                       f"{par.name} in {par.units})")
            if value.ndim > 1:
                raise SpecError(f"{where}.{par.name}", "must be a scalar or a 1-D array over subjects")
            par.check(value, f"{where}.{par.name}")
            if n is not None:
                if value.ndim == 1 and value.shape[0] != n:
                    raise SpecError(f"{where}.{par.name}", f"has {value.shape[0]} values for {n} subjects")
                value = np.broadcast_to(value, (n,)).copy()
            out[par.name] = value
        return out

    # -- evaluation helpers used by the engine ---------------------------------------------
    def y0(self, p):
        if self.initial_state is None:
            return jnp.zeros(self.n_states)
        return jnp.asarray(self.initial_state(p), dtype=jnp.float64)

    def f_vector(self, p):
        if self.bioavailability is None:
            return jnp.ones(self.n_states)
        return self.bioavailability(p)

    def lag_vector(self, p):
        if self.lag is None:
            return jnp.zeros(self.n_states)
        return self.lag(p)

    def evaluate_outputs(self, y, p):
        """Outputs for a state array ``y[..., n_states]`` -> dict name -> array[...]."""
        return {o.name: o.fn(y, p) for o in self.outputs}

    def describe(self) -> str:
        lines = [f"{self.name}: {self.description}".rstrip(": ")]
        lines.append("  states: " + ", ".join(self.states))
        lines.append("  dose compartments: " + ", ".join(self.dose_compartments))
        for p in self.parameters:
            d = "" if p.default is None else f" (default {p.default:g})"
            lines.append(f"  {p.name:7s} [{p.units}] {p.description}{d}")
        for o in self.outputs:
            lines.append(f"  output {o.name} [{o.units}] {o.long_name}")
        return "\n".join(lines)

