"""The ``VaoServer`` Prefect block: where a VAO server is and how to log in, with the secrets stored encrypted.

``vaodrill serve`` and the topology's deploy step register it (:func:`register_block_types`), so the run form's
block picker works without a separate ``prefect block register -m vaodrill_prefect.tasks.blocks``.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict

from vaodrill.vao.connection import ConnectionSettings


class VaoServer(Block, ConnectionSettings):
    """A Veeam Availability Orchestrator (REST API v2) or Recovery Orchestrator endpoint and its credentials: the
    connection settings themselves, as a Prefect block (the secrets stored encrypted, never shown)."""

    model_config = ConfigDict(frozen=False)  # Prefect sets a loaded block's fields
    _block_type_name = "VAO Server"
    _block_type_slug = "vao-server"
    _description = "Connection to a Veeam Availability Orchestrator server (REST API v2) for vaodrill."
    _documentation_url = "https://github.com/vaodrill/vaodrill#point-it-at-a-real-vao"  # type: ignore[assignment]

    @classmethod
    def of(cls, settings: ConnectionSettings) -> VaoServer:
        """These settings as a block (unsaved): how the CLI hands its connection to a flow run it starts."""
        return cls(**settings.model_dump())

    def settings(self) -> ConnectionSettings:
        """The plain settings of this block."""
        return ConnectionSettings(**self.model_dump())


def block_ref(name: str) -> dict[str, Any]:
    """A saved VaoServer block as a deployment's or a run's parameter value: the ``$ref`` Prefect resolves when
    the run starts (the run form's block picker writes the same with the block's id)."""
    return {"$ref": {"block_document_slug": f"{VaoServer.get_block_type_slug()}/{name}"}}


async def register_block_types(client: Any = None) -> None:
    """Make the block types vaodrill's run forms and deployments use known to the Prefect API (idempotent)."""
    await VaoServer.aregister_type_and_schema(client=client)
