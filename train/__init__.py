"""Training recipes for vidcolor generators (installed as ``vidcolor.train``)."""
