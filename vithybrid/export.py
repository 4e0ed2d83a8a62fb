"""python -m vithybrid.export MODEL OUT --format onnx|openvino [--int8] [--batch dynamic|N]: see vithybrid.runtimes."""

import sys

from .optimize import keep_freed_memory
from .runtimes.export import main

if __name__ == "__main__":
    keep_freed_memory()  # this process's choice, as an entry point (see vithybrid.optimize)
    sys.exit(main())
