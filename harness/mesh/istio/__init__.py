"""The Istio mesh driver (``mesh: istio``): Istio objects for every change, the real istiod locally."""
