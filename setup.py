"""The build steps pyproject.toml cannot state: Triton's protobuf schema for service/v2, and two
small C modules on the path of an MNIST-style request (service/_digitfield.c, service/_tinypng.c).

`build_py` writes service/v2/triton_protocol.binpb from the tritonclient that the build
environment holds ([build-system] requires it), so the installed service needs no tritonclient
(service/v2/protos.py says why and how it is read). In a wheel the file goes into the build
folder; in an editable install (`pip install -e .`) into the checkout, where git ignores it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # the build runs this file from an isolated environment

from service.v2 import protos  # noqa: E402  (imports google.protobuf only)


class BuildWithProtocolSchema(build_py):
    def run(self) -> None:
        super().run()
        relative = protos.DESCRIPTOR_SET.relative_to(ROOT)
        target = ROOT / relative if self.editable_mode else Path(self.build_lib) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        protos.write_descriptor_set(target)


# Optional: where no C compiler is found the install goes on, and numpy and Pillow do the same
# work (service/strokes.py, service/tiny_png.py); the results are the same to the bit.
C_STEPS = [Extension(f"service.{name}", [f"service/{name}.c"], optional=True, extra_compile_args=["-O2"])
           for name in ("_digitfield", "_tinypng")]

setup(cmdclass={"build_py": BuildWithProtocolSchema}, ext_modules=C_STEPS)
