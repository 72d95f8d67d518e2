"""Provider adapters, one module per provider family, all behind :class:`Provider`."""

from .base import Provider, ProviderError, ProviderRequest, ProviderResponse, ProviderUnavailable

__all__ = ["Provider", "ProviderError", "ProviderRequest", "ProviderResponse", "ProviderUnavailable"]
