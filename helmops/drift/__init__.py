"""Drift: deployed objects compared with their release's manifest (pure, :mod:`.compare`) and the monitor
that lists them and queues HelmApps whose release drifted (I/O, :mod:`.monitor`)."""
