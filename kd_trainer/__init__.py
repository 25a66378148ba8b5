"""Knowledge-distillation trainer for tiny real-time sharpening students."""

from kd_trainer.runtime_plugin import register as _register_runtime_loader

__version__ = "0.1.0"

_register_runtime_loader()
