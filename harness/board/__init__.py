"""The facility board (``microscope-qc serve``): every microscope's QC on one read-only web page,
over the results database and the run folders it records. ``policy`` (no web framework) is the
facility policy file; ``app`` is the Flask application (the optional extra ``board``)."""
