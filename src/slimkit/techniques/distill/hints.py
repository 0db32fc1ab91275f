"""FitNets hints: layers chosen by name, outputs caught by forward hooks, learned adapters.

Romero et al. 2015 ("FitNets: Hints for Thin Deep Nets", ICLR) guide a thin student by making
an intermediate layer regress a teacher layer through a small learned regressor. Here a layer is
named as in ``model.named_modules()``; a forward hook records its output on every forward pass.
The adapter maps the student feature to the teacher feature's shape: a 1x1 convolution for
feature maps ``(N, C, H, W)`` (followed by adaptive average pooling when the spatial sizes
differ), a linear layer on the flattened feature otherwise. The adapters are trained with the
student: :class:`HintedStudent` holds both, so the training loop's optimizer, built from the
model's parameters, updates them together.

Example:
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> recorder = FeatureRecorder(model, ["1"], role="student")
    >>> _ = model(torch.zeros(5, 1, 2, 2))
    >>> tuple(recorder.features["1"].shape)
    (5, 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from slimkit.errors import ConfigError


def layer_names(model: nn.Module) -> list[str]:
    """Names of every sub-module of ``model`` (the names hints may use)."""
    return [name for name, _ in model.named_modules() if name]


def find_layer(model: nn.Module, name: str, *, role: str) -> nn.Module:
    """The sub-module called ``name``, or a :class:`ConfigError` that lists the names there are.

    Args:
        model: the student or the teacher.
        name: a name from ``model.named_modules()``.
        role: ``"student"`` or ``"teacher"``, for the message.
    """
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise ConfigError(
            f"hint layer {name!r} does not exist in the {role} ({type(model).__name__}); "
            f"its layers are: {', '.join(layer_names(model)) or '(none)'}"
        )
    return modules[name]


class FeatureRecorder:
    """Records the outputs of named layers of a model with forward hooks.

    Args:
        model: the model to watch.
        names: layer names (checked with :func:`find_layer`).
        role: ``"student"`` or ``"teacher"``, for messages.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, role: str) -> None:
        self.role = role
        self.features: dict[str, torch.Tensor] = {}
        self.handles: list[RemovableHandle] = []
        for name in dict.fromkeys(names):  # each layer once, in order
            layer = find_layer(model, name, role=role)
            self.handles.append(layer.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def record(module: nn.Module, inputs: object, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise ConfigError(
                    f"hint layer {name!r} of the {self.role} returns {type(output).__name__}, "
                    "not a tensor; choose a layer whose output is one tensor"
                )
            self.features[name] = output

        return record

    def get(self, name: str) -> torch.Tensor:
        """The output of layer ``name`` in the last forward pass."""
        if name not in self.features:
            raise ConfigError(
                f"hint layer {name!r} of the {self.role} did not run in the forward pass; "
                "choose a layer that the model's forward calls"
            )
        return self.features[name]

    def clear(self) -> None:
        """Forget the recorded outputs."""
        self.features.clear()

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.features.clear()


class HintAdapter(nn.Module):
    """Maps a student feature to the shape of a teacher feature (FitNets' regressor).

    Args:
        student_shape: shape of one student feature sample, without the batch dimension.
        teacher_shape: shape of one teacher feature sample, without the batch dimension.
    """

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        self.teacher_shape = tuple(int(v) for v in teacher_shape)
        self.layer: nn.Module
        self.pool: nn.Module | None = None
        if len(student_shape) == 3 and len(teacher_shape) == 3:
            self.layer = nn.Conv2d(int(student_shape[0]), int(teacher_shape[0]), kernel_size=1)
            if tuple(student_shape[1:]) != tuple(teacher_shape[1:]):
                self.pool = nn.AdaptiveAvgPool2d(self.teacher_shape[1:])
        else:
            self.layer = nn.Linear(math.prod(student_shape), math.prod(teacher_shape))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        # feature: (N, *student_shape) -> (N, *teacher_shape)
        if isinstance(self.layer, nn.Conv2d):
            out = self.layer(feature)
            return self.pool(out) if self.pool is not None else out
        out = self.layer(feature.flatten(1))
        return out.reshape(len(feature), *self.teacher_shape)


class HintedStudent(nn.Module):
    """The student and its hint adapters in one module, so one optimizer trains both.

    ``forward`` is the student's; the adapters are applied by the distillation loss to the
    features that the student's hooks recorded.
    """

    def __init__(self, student: nn.Module, adapters: Sequence[HintAdapter]) -> None:
        super().__init__()
        self.student = student
        self.adapters = nn.ModuleList(adapters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)
