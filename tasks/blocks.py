"""The ``VaoServer`` Prefect block: where a VAO server is and how to log in, with the secrets stored encrypted.

``vaodrill serve`` and the topology's deploy step register it (:func:`register_block_types`), so the run form's
block picker works without a separate ``prefect block register -m tasks.blocks``.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from vaodrill.vao.connection import ConnectionSettings


class VaoServer(Block):
    """A Veeam Availability Orchestrator REST API v2 endpoint and its credentials."""

    _block_type_name = "VAO Server"
    _block_type_slug = "vao-server"
    _description = "Connection to a Veeam Availability Orchestrator server (REST API v2) for vaodrill."
    _documentation_url = "https://github.com/vaodrill/vaodrill#point-it-at-a-real-vao"  # type: ignore[assignment]

    url: str = Field(..., title="URL", description="Base URL, e.g. https://vao.example.com:9899")
    username: str = Field("", description="Account used for drills, e.g. CORP\\svc-drill (or use a child client)")
    password: SecretStr = Field(SecretStr(""), description="Password of that account (stored encrypted, never shown)")
    client_id: str | None = Field(None, title="Child client ID",
                                  description="Log in as a VAO child client (client_credentials) instead")
    client_secret: SecretStr | None = Field(None, title="Child client secret",
                                            description="Secret of the child client (stored encrypted, never shown)")
    server_timezone: str = Field("UTC", title="Server time zone",
                                 description="IANA zone of the VAO server's clock, used for restore-point dates")
    verify_tls: bool = Field(True, title="Verify TLS", description="Keep on; use a CA bundle for self-signed certs")
    ca_bundle: str | None = Field(None, title="CA bundle", description="Path of a PEM file to trust")
    allow_insecure_http: bool = Field(False, title="Allow plain HTTP",
                                      description="Send credentials over http:// to a host that is not loopback")

    def settings(self) -> ConnectionSettings:
        """The connection settings of this block (validated: a bad URL or half a child client is refused)."""
        return ConnectionSettings(url=self.url, username=self.username, password=self.password,
                                  client_id=self.client_id, client_secret=self.client_secret,
                                  server_timezone=self.server_timezone, verify_tls=self.verify_tls,
                                  ca_bundle=self.ca_bundle, allow_insecure_http=self.allow_insecure_http)


def block_ref(name: str) -> dict[str, Any]:
    """A saved VaoServer block as a deployment's or a run's parameter value: the ``$ref`` Prefect resolves when
    the run starts (the run form's block picker writes the same with the block's id)."""
    return {"$ref": {"block_document_slug": f"{VaoServer.get_block_type_slug()}/{name}"}}


async def register_block_types(client: Any = None) -> None:
    """Make the block types vaodrill's run forms and deployments use known to the Prefect API (idempotent)."""
    await VaoServer.aregister_type_and_schema(client=client)
