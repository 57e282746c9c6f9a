"""The Consul Connect driver (``mesh: consul``): see :mod:`harness.mesh.consul.driver`."""
