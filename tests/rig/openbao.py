"""The real OpenBao server the suite runs against: the demo's embedded dev server.

One implementation for the demo and the tests (:class:`agent.devvault.OpenBaoDevServer`);
this module only gives it the name the tests use.
"""

from agent.devvault import OpenBaoDevServer as OpenBaoServer

__all__ = ["OpenBaoServer"]
