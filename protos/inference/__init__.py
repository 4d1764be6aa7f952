"""Open Inference Protocol (KServe v2 gRPC) messages and service, generated from grpc_service.proto.

tritonclient.grpc ships its own copy of these messages under the same protobuf package
(``inference``), and protobuf's default pool accepts only one of the two per process.
"""

import sys

if "tritonclient.grpc.service_pb2" in sys.modules:
    raise ImportError(
        "protos.inference cannot be imported after tritonclient.grpc in the same process: both "
        "define the protobuf package 'inference'. Run tritonclient in a separate process "
        "(as tests/protos/triton_peer.py does)."
    )
