"""Network building blocks only, no training logic: conv G/D/E at any power-of-two resolution, MLPs,
the ACL module (Gz, Dc) and the ACL-SGAN classifier."""

from acl_dist.nets.acl import CodeDiscriminator, CodeGenerator, StandardizedCode
from acl_dist.nets.conv import ConvClassifier, ConvDiscriminator, ConvEncoder, ConvGenerator
from acl_dist.nets.mlp import MLP, MLPDiscriminator

__all__ = [
    "CodeDiscriminator", "CodeGenerator", "ConvClassifier", "ConvDiscriminator", "ConvEncoder",
    "ConvGenerator", "MLP", "MLPDiscriminator", "StandardizedCode",
]
