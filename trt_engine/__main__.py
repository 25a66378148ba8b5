"""``python -m trt_engine`` is the ``sharpen`` command (``python -m trt_engine --help``)."""

import sys

from trt_engine.cli import sharpen_main

sys.exit(sharpen_main())
