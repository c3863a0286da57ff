"""Q-BERT (Shen et al., AAAI 2020): Hessian-guided mixed precision and group-wise low-bit
quantization of a transformer, trained quantization-aware and served by integer GEMMs.

    config = QBertConfig(block_bits=(8, 4, 3, 2, 2, 2))   # or assign_bits from sensitivities
    quantize_model(model, config)        # quantization-aware layers (train these)
    freeze(model)                        # integer layers: packed codes, int8 GEMMs
"""

from intcore.qbert.apply import freeze, load_quantized, quantize_model, save_quantized, weight_bytes
from intcore.qbert.bit_assignment import assign_bits, average_bits_budget, quantization_error, reversed_assignment
from intcore.qbert.blocks import block_parameters, find_blocks
from intcore.qbert.config import QBertConfig

__all__ = [
    "QBertConfig",
    "assign_bits",
    "average_bits_budget",
    "block_parameters",
    "find_blocks",
    "freeze",
    "load_quantized",
    "save_quantized",
    "quantization_error",
    "quantize_model",
    "reversed_assignment",
    "weight_bytes",
]
