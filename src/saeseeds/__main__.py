"""`python -m saeseeds ...`: the same command line as the `saeseeds` console script."""

from saeseeds.cli import entry

entry()
