"""Export: a trained run (`runs/<id>/`) -> ONNX, proven equal to PyTorch, published into `models/<id>/`.

    python -m export export --id cnn-mnist     # one run
    python -m export export-all                # every finished run

The entry point for code is `export.publish.publish_run`.
"""
