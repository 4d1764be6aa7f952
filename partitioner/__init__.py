"""The partitioner: capture a network as a graph, profile it, and split it.

A model is traced into a :class:`~partitioner.model.capture.Graph`, each node is given a
latency per device (:mod:`partitioner.pricing.profiles`), the cost model
(:mod:`partitioner.pricing.cost`) prices every cut, and the solvers
(:mod:`partitioner.solve.problem`) find the best cut for an objective, or for every
bandwidth at once (:mod:`partitioner.solve.breakpoints`). :mod:`partitioner.deploy.artifact`
turns a cut into a head and a tail that can be deployed.

This package imports neither grpc nor ray.
"""
