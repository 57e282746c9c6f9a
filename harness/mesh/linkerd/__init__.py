"""``mesh: linkerd``: Linkerd objects and annotations in an existing cluster (:mod:`.driver`)."""
