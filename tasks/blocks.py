"""The ``VaoServer`` Prefect block: where a VAO server is and how to log in, with the password as a secret.

Register it for the UI with ``prefect block register -m tasks.blocks``.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from vaodrill.client import VaoClient
from vaodrill.connection import ConnectionSettings


class VaoServer(Block):
    """A Veeam Availability Orchestrator REST API v2 endpoint and its credentials."""

    _block_type_name = "VAO Server"
    _block_type_slug = "vao-server"
    _description = "Connection to a Veeam Availability Orchestrator server (REST API v2) for vaodrill."
    _documentation_url = "https://github.com/vaodrill/vaodrill#point-it-at-a-real-vao"

    url: str = Field(..., title="URL", description="Base URL, e.g. https://vao.example.com:9899")
    username: str = Field(..., description="Account used for drills, e.g. CORP\\svc-drill")
    password: SecretStr = Field(..., description="Password of that account (stored encrypted, never shown)")
    server_timezone: str = Field("UTC", title="Server time zone",
                                 description="IANA zone of the VAO server's clock, used for restore-point dates")
    verify_tls: bool = Field(True, title="Verify TLS", description="Keep on; use a CA bundle for self-signed certs")
    ca_bundle: str | None = Field(None, title="CA bundle", description="Path of a PEM file to trust")

    def settings(self) -> ConnectionSettings:
        return ConnectionSettings(url=self.url, username=self.username, password=self.password,
                                  server_timezone=self.server_timezone, verify_tls=self.verify_tls,
                                  ca_bundle=self.ca_bundle)

    def get_client(self) -> VaoClient:
        """A new VaoClient for this server (one per drill run)."""
        return self.settings().client()
