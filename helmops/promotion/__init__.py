"""Safe promotion: approval of a plan (``approval``, ``plan``), maintenance windows (``windows``) and automatic
promotion with a soak (``soak``); the options are annotations (``settings``). Kept import-light: the API
package reads ``settings``; :mod:`helmops.promotion.wiring` builds the executor gates for ``helmops run``."""
