from .multimodal_lg_conv import MultiModalLGConv, layer_mean

__all__ = ['MultiModalLGConv', 'layer_mean']
