"""Knowledge-distillation trainer for tiny real-time sharpening students."""

__version__ = "0.1.0"
