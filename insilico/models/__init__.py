"""PK/PD model library: built-in compartment and PD models, composition, user models."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.models._base import PARAMETER_INFO, Model, Output, Parameter, ParameterInfo, parameter_info
from insilico.models._pd import PD_MODELS, PDModel, compose
from insilico.models._pk import pk_model
from insilico.models._registry import builtin_model_names, get_model

__all__ = ["Model", "Output", "Parameter", "PDModel", "PD_MODELS", "PARAMETER_INFO", "ParameterInfo",
           "compose", "pk_model", "get_model", "builtin_model_names", "parameter_info"]
