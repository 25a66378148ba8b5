"""Safe file I/O for the trainer: the runtime's own helpers (:mod:`trt_engine.io`), re-exported."""

from trt_engine.io import (
    IMAGE_SUFFIXES,
    ImageReadError,
    atomic_path,
    atomic_write_bytes,
    list_images,
    read_image,
    sha256_file,
    write_image,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "atomic_path",
    "atomic_write_bytes",
    "list_images",
    "read_image",
    "sha256_file",
    "write_image",
]
