"""Print an image's requirements, one per line, for `pip install -r`.

pyproject.toml stays the one list of dependencies (core = serving; extras such as `train`);
only the ONNX Runtime line is chosen here, by image variant, and pinned to one release:

    gpu: onnxruntime-gpu[cuda,cudnn]  (CUDA 13 and cuDNN 9 as pip wheels: no CUDA base image)
    cpu: onnxruntime                  (and no onnxruntime-gpu, no CUDA libraries at all)

    python docker/requirements.py --runtime cpu pyproject.toml
    python docker/requirements.py --runtime gpu --extra train pyproject.toml
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

ONNX_RUNTIME = {"gpu": "onnxruntime-gpu[cuda,cudnn]", "cpu": "onnxruntime"}
# The release the test suite runs; the cuda and cudnn extras of its gpu build are CUDA 13, cuDNN 9.
ORT_VERSION = "1.31.1"


def requirements(pyproject: Path, runtime: str, ort_version: str, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    dependencies = project["dependencies"] + [dep for extra in extras
                                              for dep in project["optional-dependencies"][extra]]
    others = [dep for dep in dependencies if not re.match(r"onnxruntime\b", dep)]
    if len(others) == len(dependencies):
        raise SystemExit(f"{pyproject}: no onnxruntime dependency to replace; has the list changed?")
    return [*others, f"{ONNX_RUNTIME[runtime]}=={ort_version}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--runtime", choices=sorted(ONNX_RUNTIME), required=True)
    parser.add_argument("--ort-version", default=ORT_VERSION, help="default: %(default)s")
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependency group to add")
    args = parser.parse_args()
    print("\n".join(requirements(args.pyproject, args.runtime, args.ort_version, args.extra)))


if __name__ == "__main__":
    main()
