"""The Triton side of a model folder: `config.pbtxt` and `labels.txt`.

The config is plain text in the protobuf text format of Triton's `ModelConfig`; the tests parse
every one with the schema that the `tritonclient` package ships.
"""

from __future__ import annotations

from modelrepo.layout import INPUT_NAME, LABELS_FILE, OUTPUT_NAME

PLATFORM = "onnxruntime_onnx"
MAX_BATCH_SIZE = 64  # the largest batch Triton's dynamic batcher forms; the ONNX batch axis is free


def config_pbtxt(model_id: str, input_shape: tuple[int, int, int], num_classes: int) -> str:
    """Triton's model configuration; dims leave out the batch axis, as max_batch_size > 0 requires."""
    dims = ", ".join(str(d) for d in input_shape)
    return f'''name: "{model_id}"
platform: "{PLATFORM}"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {num_classes} ]
    label_filename: "{LABELS_FILE}"
  }}
]
# Gather concurrent requests into one batch, waiting at most 0.5 ms for company.
dynamic_batching {{
  max_queue_delay_microseconds: 500
}}
# KIND_AUTO: one instance on each GPU when there are GPUs, else on the CPU.
instance_group [
  {{
    count: 1
    kind: KIND_AUTO
  }}
]
'''


def labels_txt(classes: tuple[str, ...] | list[str]) -> str:
    """Class names, one per line, in output order (Triton's classification extension reads it)."""
    return "".join(f"{name}\n" for name in classes)
