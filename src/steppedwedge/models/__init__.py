"""Model fitting: mixed models, GEE and cluster-level analyses (see :func:`steppedwedge.fit`)."""
