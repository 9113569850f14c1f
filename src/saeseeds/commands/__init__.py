"""One module per `saeseeds` verb; each exposes `register(subparsers)` and sets `func` on its parser."""
