"""The teach loop on the device: collect frames into an inbox, label them into a dataset, export it.

``inbox`` holds frames waiting for a label (``durable`` writes them); ``collector`` and ``scene`` decide
which frames to keep; ``dataset`` is the labelled folder training reads; ``labelling``, ``burst`` and
``api`` serve the /label page; ``daemon`` fits them into the service; ``commands``, ``standalone``,
``client`` and ``pull`` are `edgesight collect`, `dataset-export` and `pull-data`.
"""

# Where `make deploy` puts edgesight and its config on a device: what `pull-data` runs over ssh.
REMOTE_EDGESIGHT = "/opt/edgesight/venv/bin/edgesight"
REMOTE_CONFIG = "/etc/edgesight/edgesight.toml"
