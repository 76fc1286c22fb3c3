"""The base every layer may use: verified atomic file writes and hashes (`fileio`), the cache
folder (`cache`) and typed option fields for configuration dataclasses (`options`). Imports
nothing else from resnetkit."""
