"""The inference operator: reconciles InferenceModel resources into a running, probed, monitored runtime.

Layout: ``api`` (the resource's schema, source of the CRD), ``manifests`` (pure manifest builders),
``names`` (names and labels they all share), ``kube`` (a thin API client), ``status`` (conditions from
live objects), ``reconciler`` (one level-based pass) and ``handlers`` (the kopf wiring).
"""

__version__ = "0.1.0"
