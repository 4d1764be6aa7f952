"""The wire layer of edgecut, the bottom of the import graph (it imports nothing of the project).

``.proto`` sources with their checked-in generated code (``inference``: the Open Inference
Protocol; ``edgecut.v1``: edgecut's control API; regenerate with ``python -m protos.generate``);
numpy <-> wire serde in three layers, ``arrays`` (one tensor) under ``serde`` (ModelInfer
messages) under ``splice`` (the same messages as bytes), all raising ``errors.TensorWireError``;
and ``transport`` (the one builder of servers and channels).
"""
