"""The fleet simulator: thousands to millions of cameras, real uplinks, a finite cloud.

A scenario (:mod:`simulator.scenario`, YAML) is compiled once with the partitioner's
plans (:mod:`simulator.fleet`), then simulated window by window by camera shards
(:mod:`simulator.camera`: arrivals, policy, edge queue, fluid uplink) and cloud sites
(:mod:`simulator.site`: merged arrivals, servers, dynamic batching), whose queues are
solved by :mod:`simulator.queues`, in this process (:mod:`simulator.engine`) or on Ray
(:mod:`simulator.ray_transport`, the only module that imports ray). Results:
:mod:`simulator.results`; sweeps: :mod:`simulator.sweep`. Importing this package
imports nothing else.
"""
