"""python -m vithybrid.export MODEL OUT --format onnx|openvino [--int8] [--batch dynamic|N]: see vithybrid.runtimes."""

import sys

from .runtimes.export import main

if __name__ == "__main__":
    sys.exit(main())
