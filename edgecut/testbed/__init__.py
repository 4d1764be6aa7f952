"""The testbed: edge and cloud node processes in two network namespaces joined by a
kernel-shaped link (``link``), a trace replayed on it (``trace``), the run (``run``), a bulk
transfer over it (``probe``). Needs root; docs/testbed.md."""
