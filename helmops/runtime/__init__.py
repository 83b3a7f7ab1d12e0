"""The ``helmops run`` process: settings and the feature flag, leader election, the work queue and its
workers, kopf wiring, metrics and logs. It owns no reconcile logic: it feeds HelmApp keys to
:mod:`helmops.controller` and day-2 timers (:mod:`helmops.drift`, :mod:`helmops.polling`)."""
