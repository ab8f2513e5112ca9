"""Network building blocks only, no training logic: conv G/D/E at any power-of-two resolution (DCGAN-style and
R3GAN's), MLPs, the ACL module (Gz, Dc) and the ACL-SGAN classifier."""

from acl_dist.nets.acl import CodeDiscriminator, CodeGenerator, StandardizedCode
from acl_dist.nets.conv import ConvClassifier, ConvDiscriminator, ConvEncoder, ConvGenerator
from acl_dist.nets.mlp import MLP, MLPDiscriminator
from acl_dist.nets.r3gan import R3Discriminator, R3Encoder, R3Generator

__all__ = [
    "CodeDiscriminator", "CodeGenerator", "ConvClassifier", "ConvDiscriminator", "ConvEncoder",
    "ConvGenerator", "MLP", "MLPDiscriminator", "R3Discriminator", "R3Encoder", "R3Generator", "StandardizedCode",
]
