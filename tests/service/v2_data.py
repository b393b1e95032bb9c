"""Real test images and the answers to expect from them, for the Open Inference Protocol tests.

The tensors are made in this process by the service's own preprocessing of real fixture PNGs
(what a Triton client would have to do itself), and the reference answers come from the same
ONNX files run here; /predict gives each image's probabilities for the v2 answers to equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import numpy as np
from testkit.fixture_images import cifar_test, encode, mnist_test

from modelrepo.providers import CPU
from service.preprocess import preprocess
from service.repository import LoadedModel, load_model


@dataclass(frozen=True)
class Images:
    model: LoadedModel  # the same ONNX file as the server's, run here
    pngs: list[bytes]
    tensor: np.ndarray  # N×C×H×W float32, normalised: what a Triton client sends as `image`
    labels: np.ndarray  # the truth

    @property
    def classes(self) -> list[str]:
        return self.model.card.classes

    def expected_logits(self) -> np.ndarray:
        return self.model.infer(self.tensor)


@cache
def real_images(folder: Path, count: int) -> Images:
    model = load_model(folder, (CPU,))
    pixels, labels = mnist_test() if model.card.dataset == "mnist" else cifar_test()
    pngs = [encode(x) for x in pixels[:count]]
    tensor = np.stack([preprocess(png, model.spec, 10**8) for png in pngs])
    return Images(model, pngs, tensor, labels[:count])


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


def predict_probabilities(url: str, model: str, png: bytes) -> np.ndarray:
    """/predict's probabilities for every class, in class order (float64, as it computes them)."""
    answer = httpx.post(f"{url}/predict/{model}", content=png, headers={"content-type": "image/png"},
                        params={"top_k": 1000}, timeout=60).json()
    probabilities = np.zeros(len(answer["top_k"]))
    for entry in answer["top_k"]:
        probabilities[entry["index"]] = entry["probability"]
    return probabilities
