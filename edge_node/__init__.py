"""The edge node: runs heads on frames and talks to a cloud node (see :mod:`edge_node.node`).

Frame sources (:mod:`edge_node.sources`), loaded heads (:mod:`edge_node.heads`), the gRPC
client (:mod:`edge_node.client`), uplink estimation (:mod:`edge_node.estimator`) and an
in-process link emulator (:mod:`edge_node.throttle`).
"""
