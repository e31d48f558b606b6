"""What a run writes and how: the journal, CSV series, OME-TIFF stacks and their metadata,
provenance, and the words for how a run ended."""
