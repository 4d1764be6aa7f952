"""edgecut.v1: the control API (ListCuts, GetManifest, DeploySplit), generated from edgecut.proto."""
