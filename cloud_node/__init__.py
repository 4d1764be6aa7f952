"""The cloud node: serves the tails of a model repository over gRPC (see :mod:`cloud_node.server`).

``cloud_node.server.CloudNode`` runs the Open Inference Protocol service with dynamic batching
(:mod:`cloud_node.batcher`), edgecut's control service, health, reflection and metrics.
"""

import logging

# A library stays quiet until the application configures logging (cloud_node.logs.configure).
logging.getLogger("cloud_node").addHandler(logging.NullHandler())
