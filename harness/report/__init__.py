"""Reports: the HTML report of one run, its plots, and trend pages over the results store."""
