"""edgecut's own gRPC API, one subpackage per version of it."""
