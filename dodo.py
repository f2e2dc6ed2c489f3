"""doit entry point: load the projects and hand doit one task per (stage, project)."""

from edibuild.dodo import load

DOIT_CONFIG, _creators = load()
globals().update(_creators)
