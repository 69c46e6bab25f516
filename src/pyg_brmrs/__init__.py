r"""pyg-brmrs: BR-MRS multimodal recommendation as PyTorch Geometric
components."""
__version__ = '0.1.0'
