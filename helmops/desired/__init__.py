"""Desired state: a HelmApp and one target cluster → the release helm should hold there (chart, values,
options, fingerprint). The controller and ``helmops render/diff`` use the same code."""
