"""Reading Kubernetes API responses without trusting their shape: JSON of any nesting depth is parsed
without recursion and cut to a fixed depth (``bounded``), for kopf's watch and list (``kopfpatch``) and for
every ``kubernetes`` ApiClient helmops creates (``client``)."""
