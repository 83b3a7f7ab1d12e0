"""The HelmApp controller proper: one reconcile of one HelmApp (targets, chart and values → one action per
cluster → status) and the ownership ledger. Process wiring lives in :mod:`helmops.runtime`."""
