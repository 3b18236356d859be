"""The real OpenBao server the suite runs against: the demo's embedded dev server.

One implementation for the demo and the tests (:class:`agent.demo.OpenBaoDevServer`);
this module only gives it the name the tests use.
"""

from agent.demo import OpenBaoDevServer as OpenBaoServer

__all__ = ["OpenBaoServer"]
