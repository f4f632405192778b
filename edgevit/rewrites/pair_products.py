"""LiteRT's form of the attention variants' batched products: a product of one matrix pair as a batch of two.

The variants compute their attention with ``BatchedProduct`` (``edgevit.models.attention``). With a batch of one pair
the TFLite converter may write ``bmm`` as FULLY_CONNECTED with an activation as its weights, which XNNPACK does not
take; two copies stay a BATCH_MATMUL. The pass sets ``pair_as_two`` on every product of a copy of the model, so the
change belongs to LiteRT's form (``FORMS["litert"]``) instead of a switch around the converter: exact (the first
copy's result is the product itself), and a no-op for the original E-MHSA, which has no such product.
"""

from __future__ import annotations

from torch import nn

from edgevit.models.attention import BatchedProduct
from edgevit.rewrites.base import PassReport, register_pass


@register_pass("products_pair_as_two", "the attention variants' batched products of one matrix pair computed as a "
                                       "batch of two copies (LiteRT: keeps them a BATCH_MATMUL inside XNNPACK)")
def products_pair_as_two(model: nn.Module) -> PassReport:
    report = PassReport("products_pair_as_two")
    for name, m in model.named_modules():
        if isinstance(m, BatchedProduct) and not m.pair_as_two:
            m.pair_as_two = True
            report.changed.append(name)
    return report
