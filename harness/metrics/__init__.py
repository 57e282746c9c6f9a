"""Metric sources and the vocabulary they speak.

A source (Envoy admin today, Prometheus next) takes snapshots in the mesh's own names;
:mod:`harness.metrics.vocabulary` names the quantities expectations read (attempts, overflows, timeouts,
ejections per edge; what each listener answered), and :mod:`harness.metrics.envoy_names` maps Envoy's
stat names into them, per mesh naming.
"""
