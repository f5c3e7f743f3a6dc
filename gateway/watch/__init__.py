"""Keeping a daemon watchable, the box's and the hub's alike: supervision (sd_notify, the status
file, /healthz), the plain-word health of the status strip, the operator's metrics, logging."""
