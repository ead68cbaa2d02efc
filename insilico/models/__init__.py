"""PK/PD model library: built-in compartment, TMDD, metabolite and PD models, composition, user models."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.models._base import PARAMETER_INFO, Model, Output, Parameter, ParameterInfo, PDModel, parameter_info
from insilico.models._metabolite import add_metabolite
from insilico.models._oncology import friberg, simeoni
from insilico.models._pd import PD_MODELS, compose
from insilico.models._pk import pk_model
from insilico.models._registry import builtin_model_names, get_model
from insilico.models._tmdd import qss_free_concentration, tmdd_model, tmdd_reduced_parameters

__all__ = ["Model", "Output", "Parameter", "PDModel", "PD_MODELS", "PARAMETER_INFO", "ParameterInfo",
           "add_metabolite", "compose", "friberg", "pk_model", "get_model", "builtin_model_names",
           "parameter_info", "qss_free_concentration", "simeoni", "tmdd_model", "tmdd_reduced_parameters"]
