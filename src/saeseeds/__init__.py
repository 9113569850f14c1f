"""saeseeds: train sparse autoencoders over many seeds on one data stream and find which features are real."""

__version__ = "0.1.0"
