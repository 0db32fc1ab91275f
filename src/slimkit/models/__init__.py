"""Reference models behind one registry: ``create_model(name, ...)`` and ``list_models()``.

Importing this package registers the built-in models; a new model is a new file here with one
``@register_model`` line, plus its import below.
"""

from slimkit.models import (  # noqa: F401  (registration side effects)
    lenet,
    mlp,
    mobilenet_v1,
    mobilenet_v2,
    shufflenet,
    transformer,
)
from slimkit.models.registry import (
    ModelInfo,
    ModelSpec,
    build_model,
    create_model,
    list_models,
    model_info,
    model_spec_of,
    register_model,
)

DEFAULT_MODEL = "lenet5"

__all__ = [
    "DEFAULT_MODEL",
    "ModelInfo",
    "ModelSpec",
    "build_model",
    "create_model",
    "list_models",
    "model_info",
    "model_spec_of",
    "register_model",
]
