"""The obvious Litestar + ONNX Runtime server: what most people write first, for comparison.

    uvicorn --factory bench.peer_server:create_app          (bench/service_benchmark.py runs it)

A synchronous handler run in a thread (`sync_to_thread`), Pillow to decode and resize, one
ONNX Runtime session with one thread, no batching. The same model file and the same image
as cnnzoo's, so `make bench-service` compares servers, not models. Env: PEER_MODEL (a model
folder of the repository).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from litestar import Litestar, post
from PIL import Image


def create_app() -> Litestar:
    folder = Path(os.environ["PEER_MODEL"])
    card = json.loads((folder / "card.json").read_text())
    channels, height, width = card["input"]["shape"]
    mean = np.array(card["preprocessing"]["mean"], np.float32).reshape(-1, 1, 1)
    std = np.array(card["preprocessing"]["std"], np.float32).reshape(-1, 1, 1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def classify(body: bytes) -> dict:
        image = Image.open(io.BytesIO(body)).convert("L" if channels == 1 else "RGB").resize((width, height))
        pixels = np.asarray(image, np.float32).reshape(height, width, channels).transpose(2, 0, 1) / 255
        logits = session.run(None, {"image": ((pixels - mean) / std)[None].astype(np.float32)})[0][0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = int(probabilities.argmax())
        return {"label": card["classes"][best], "probability": float(probabilities[best])}

    @post("/predict/{model:str}", status_code=200, sync_to_thread=True)
    def predict(model: str, body: bytes) -> dict:
        return classify(body)

    return Litestar([predict])

