from .multimodal_lg_conv import MultiModalLGConv

__all__ = ['MultiModalLGConv']
