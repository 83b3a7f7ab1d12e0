"""kopf wiring, the work queue, the feature flag and the ``helmops run`` process."""
