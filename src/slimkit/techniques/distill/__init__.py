"""Knowledge distillation (Hinton, Vinyals and Dean 2015) and FitNets hints (Romero et al. 2015).

``compress(model, [DistillationConfig(teacher="teacher.safetensors", temperature=20)], data=...)``
trains a copy of ``model`` as the student; :func:`distill` does the same in place and returns the
training result.
"""

from slimkit.techniques.distill.config import (
    LIVE_TEACHER_MESSAGE,
    DistillationConfig,
    HintConfig,
    LiveTeacher,
    coerce_hint,
)
from slimkit.techniques.distill.distill import (
    DistillationLoss,
    check_models,
    distill,
    load_teacher,
    predict_logits,
    prepare_hints,
)
from slimkit.techniques.distill.hints import (
    FeatureRecorder,
    HintAdapter,
    HintedStudent,
    find_layer,
    layer_names,
)
from slimkit.techniques.distill.loss import distillation_loss, hint_loss, soft_target_loss

__all__ = [
    "LIVE_TEACHER_MESSAGE",
    "DistillationConfig",
    "DistillationLoss",
    "FeatureRecorder",
    "HintAdapter",
    "HintConfig",
    "HintedStudent",
    "LiveTeacher",
    "check_models",
    "coerce_hint",
    "distill",
    "distillation_loss",
    "find_layer",
    "hint_loss",
    "layer_names",
    "load_teacher",
    "predict_logits",
    "prepare_hints",
    "soft_target_loss",
]
