"""Figures, HTML pages and the one-page report of saeseeds outputs (`ss.write_report`, `saeseeds report`)."""
