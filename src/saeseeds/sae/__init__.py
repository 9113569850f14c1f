"""The sparse autoencoder: architectures, sparse encode/decode, checkpoints, readers for other libraries."""

# the built-in architectures register themselves (saeseeds.sae.registry), first and in this order
from saeseeds.sae import topk, batchtopk, relu, jumprelu  # noqa: F401, I001  isort: skip
from saeseeds.sae import matryoshka, archetypal  # noqa: F401, I001  isort: skip  (issue 27's recipes, after them)
from saeseeds.sae.checkpoint import fold_input_scale, load_sae, save_sae
from saeseeds.sae.formats import detect_format, load_any, load_dictionary_learning, load_saelens
from saeseeds.sae.model import SparseAutoencoder, dense_to_code
from saeseeds.sae.outputs import ForwardOutput, LatentCode

__all__ = [
    "ForwardOutput",
    "LatentCode",
    "SparseAutoencoder",
    "dense_to_code",
    "detect_format",
    "fold_input_scale",
    "load_any",
    "load_dictionary_learning",
    "load_saelens",
    "load_sae",
    "save_sae",
]
