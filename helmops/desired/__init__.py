"""Desired state: a HelmApp and the Fleet Clusters/ClusterGroups → per target cluster, the release helm should
hold there (chart, values, options, fingerprint). One pipeline (``pipeline.py``, starting at ``targets.py``),
used verbatim by the controller and ``helmops render/diff``; I/O sits behind small Protocols."""
