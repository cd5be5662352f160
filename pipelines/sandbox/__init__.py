"""A local imitation of Synctera's External Accounts API: deterministic data, caps, latency and faults.

    sandbox = Sandbox(SandboxConfig(seed=7, accounts=40))
    with running(sandbox) as server:
        client = SyncteraClient(base_url=server.base_url, api_key=server.api_key)

The sandbox imports nothing from the client or from Dagster: it is an independent implementation
of the spec, so that the client is tested against something it did not write.
"""

from .app import RequestRecord, Sandbox
from .config import DENSITY_PROFILES, ENDPOINTS, FAULT_KINDS, SandboxConfig
from .server import RunningSandbox, running, serve_forever

__all__ = [
    "DENSITY_PROFILES",
    "ENDPOINTS",
    "FAULT_KINDS",
    "RequestRecord",
    "RunningSandbox",
    "Sandbox",
    "SandboxConfig",
    "running",
    "serve_forever",
]
