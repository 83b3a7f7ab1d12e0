"""helmops: a Fleet-compatible HelmApp controller that drives the real helm binary."""

__version__ = "0.1.0"

#: The API group/version/plural of the resource we reconcile (Fleet v0.12's HelmApp, unchanged).
GROUP = "fleet.cattle.io"
VERSION = "v1alpha1"
PLURAL = "helmapps"
KIND = "HelmApp"
