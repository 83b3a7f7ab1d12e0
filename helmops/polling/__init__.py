"""Polling chart sources for new versions of a HelmApp's constraint: the schedule (pure,
:mod:`.schedule`) and the poller (I/O, :mod:`.poller`)."""
