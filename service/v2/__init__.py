"""The Open Inference Protocol (KServe v2) with Triton's extensions, over HTTP and gRPC.

Beside the service's own API, on the same catalog and batchers. One module per concern:

    protos.py      Triton's protobuf schema at run time (built from what tritonclient ships)
    tensors.py     tensors: datatypes, shapes, JSON and raw encodings
    rest.py        the HTTP body: JSON header, binary tensor data extension
    grpc_codec.py  the gRPC messages
    models.py      server and model metadata, the model configuration
    inference.py   the one inference function both edges call, and its metrics
    errors.py      the protocol's view of the service's typed errors
    http.py        the Litestar routes under /v2
    grpc_server.py the GRPCInferenceService, started and stopped with the app
"""
