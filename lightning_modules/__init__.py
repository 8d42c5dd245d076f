"""LightningModules, encoders, losses and negatives' sources of the suite."""

from lightning_modules.base import SuiteModule
from lightning_modules.contrastive import ContrastiveModule
from lightning_modules.encoders import Encoder, ResNetEncoder, SmallConvEncoder
from lightning_modules.linear_eval import LinearEvalModule
from lightning_modules.losses import (ContrastiveLoss, ContrastiveLossBase, HardContrastiveLoss,
                                      HardSimpleContrastiveLoss, SimpleContrastiveLoss)
from lightning_modules.negatives import InBatchNegatives, MemoryBank, MomentumQueue, NegativeSource
from lightning_modules.followup_losses import (AlignUniformLoss, CosineTemperatureSchedule, DebiasedContrastiveLoss,
                                               DecoupledContrastiveLoss, DualTemperatureLoss,
                                               HardNegativeContrastiveLoss, LearnableTemperatureLoss,
                                               ModelAwareContrastiveLoss, WeightedDecoupledContrastiveLoss)

__all__ = [
    "SuiteModule", "ContrastiveModule", "LinearEvalModule", "Encoder", "ResNetEncoder", "SmallConvEncoder",
    "ContrastiveLossBase", "ContrastiveLoss", "SimpleContrastiveLoss", "HardContrastiveLoss",
    "HardSimpleContrastiveLoss", "NegativeSource", "MemoryBank", "InBatchNegatives", "MomentumQueue",
    "DebiasedContrastiveLoss", "HardNegativeContrastiveLoss", "DecoupledContrastiveLoss",
    "WeightedDecoupledContrastiveLoss", "DualTemperatureLoss", "ModelAwareContrastiveLoss",
    "CosineTemperatureSchedule", "LearnableTemperatureLoss", "AlignUniformLoss",
]
