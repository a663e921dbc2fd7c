"""Re-export: `Split` lives in `divrec.data.split` (the data layer never imports splitting)."""

from divrec.data.split import Split

__all__ = ["Split"]
