"""The compose mesh: the local mesh's Envoy configuration, run as containers by docker compose.

One renderer, two process managers: the Envoy configuration, certificates and demo apps are exactly the
local mesh's (``harness.mesh.local``); this package only decides where each runs (a container per app
and per sidecar, a gateway, a Toxiproxy server, Prometheus), builds the images where no registry can be
reached (:mod:`.images`), writes the compose project (:mod:`.project`) and acts on containers through
the docker SDK (:mod:`.driver`).
"""
