"""PK/PD model library: built-in compartment, TMDD, metabolite and PD models, composition, user models
(Python or text equations) and the model reference of specs (`ModelRef`, `resolve_model`)."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.models._base import PARAMETER_INFO, Model, Output, Parameter, ParameterInfo, PDModel, parameter_info
from insilico.models._ddi import DDI_MECHANISMS, ddi_model, fda_static_auc_ratio
from insilico.models._metabolite import add_metabolite
from insilico.models._oncology import friberg, simeoni
from insilico.models._pd import PD_MODELS, compose
from insilico.models._pk import pk_model
from insilico.models._ref import ModelRef, resolve_model
from insilico.models._registry import builtin_model_names, get_model
from insilico.models._text import TextModelSpec, describe_text_model, load_text_model, text_model
from insilico.models._tmdd import qss_free_concentration, tmdd_model, tmdd_reduced_parameters

__all__ = ["DDI_MECHANISMS", "ddi_model", "fda_static_auc_ratio",
           "Model", "ModelRef", "Output", "Parameter", "PDModel", "PD_MODELS", "PARAMETER_INFO", "ParameterInfo",
           "TextModelSpec", "add_metabolite", "builtin_model_names", "compose", "describe_text_model", "friberg",
           "get_model", "load_text_model", "parameter_info", "pk_model", "qss_free_concentration", "resolve_model",
           "simeoni", "text_model", "tmdd_model", "tmdd_reduced_parameters"]
