"""The Litestar inference service: serves the model repository `models/` on ONNX Runtime.

It never imports torch (the serving image stays small); everything it knows about a model
comes from the model's card.json.
"""
