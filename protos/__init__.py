"""The wire layer of edgecut, the bottom of the import graph (it imports nothing of the project).

``.proto`` sources with their checked-in generated code (``inference``: the Open Inference
Protocol; ``edgecut.v1``: edgecut's control API; regenerate with ``python -m protos.generate``);
numpy <-> wire serde in three layers, ``arrays`` (one tensor) under ``serde`` (ModelInfer
messages) under ``splice`` (the same messages as bytes), all raising ``errors.TensorWireError``;
``transport`` (the one builder of servers and channels); and ``allocator`` (keeps freed
buffers in the process, so no forward or message refaults them; no grpc, any layer calls it).
"""
