"""Image analysis: the classifier client, the cache in front of it, and the
background worker that runs it on devices' records."""
