"""Where outputs live: the content-addressed cache, artifact folders, the workspace."""
