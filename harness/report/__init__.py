"""Reports: the HTML report of one run (``report``: its skeleton; each analysis draws its own
figures and sections with ``html_parts`` and ``plots``), and trend pages over the results store
(``trend_report``)."""
