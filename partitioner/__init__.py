"""The partitioner: capture a network as a graph, profile it, and split it.

A model is traced into a :class:`~partitioner.graph.Graph`, each node is given a
latency per device (:mod:`partitioner.profiles`), the cost model
(:mod:`partitioner.cost`) prices every cut, and the solvers
(:mod:`partitioner.solvers`) find the best cut for an objective, or for every
bandwidth at once (:mod:`partitioner.breakpoints`). :mod:`partitioner.artifact`
turns a cut into a head and a tail that can be deployed.

This package imports neither grpc nor ray.
"""
