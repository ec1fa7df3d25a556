"""mihead: cluster images without labels by mutual information (IIC, DHOG, DCCM)."""

from mihead.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
