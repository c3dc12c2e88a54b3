"""The teach loop on the device: collect frames into an inbox, label them into a dataset, export it.

``inbox`` holds frames waiting for a label; ``collector`` decides which frames to keep; ``dataset``
is the labelled folder training reads; ``labelling`` and ``api`` serve the /label page; ``pull``
merges a device's dataset into a workstation folder.
"""
