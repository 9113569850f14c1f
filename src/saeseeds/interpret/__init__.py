"""Automated interpretability of latents by stability group (`saeseeds interpret`, docs/definitions.md,
"Interpretability"): contexts from the run's stored rows, explanations and detection scores behind one interface
(`interpret.interface`), and the claims about shared / unshared and stable / unstable latents tested per seed."""
