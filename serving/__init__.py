"""The critic as a Ray Serve service: HTTP (FastAPI) and gRPC ingress, batched critic deployment."""
