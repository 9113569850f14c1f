"""The one-page HTML report of any saeseeds output: find the outputs in a directory, turn their files into
sections (tables, embedded figures, claims, browsable latents) and render them through jinja2 templates.
"""
