"""A facility of simulated microscopes: its file (``facility_file``) and the demo that runs their
schedules over a month of virtual time into one results database (``demo``)."""
