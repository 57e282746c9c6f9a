"""What the drivers of meshes in a Kubernetes cluster share: the API server reached through the
kubernetes client (:mod:`.rest`), and the namespace's pods (:mod:`.pods`). No driver of its own."""
