"""Connection settings for one VAO server: the only thing that changes between the simulator and production."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from vaodrill.client import VaoClient

ENV_VARS = ("VAO_URL", "VAO_USERNAME", "VAO_PASSWORD", "VAO_TIMEZONE", "VAO_CA_BUNDLE", "VAO_VERIFY_TLS")


class ConnectionSettings(BaseModel):
    """Where VAO is and how to log in. The password is a secret: never shown by ``repr``, logs or reports."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="https://vao.example.com:9899")
    username: str
    password: SecretStr
    server_timezone: str = Field("UTC", description="IANA zone of the VAO server's clock (restore-point dates)")
    verify_tls: bool = True
    ca_bundle: str | None = Field(None, description="PEM file trusted for the server's certificate")
    timeout: float = 30.0
    simulated: bool = Field(False, description="True for the embedded simulator (no approval prompts)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"VAO URL must start with https:// (got {value!r})")
        return value.rstrip("/")

    @field_validator("server_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        import pendulum

        try:
            pendulum.timezone(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def client(self, **overrides: object) -> VaoClient:
        """A new client (one login, one pool): make one per drill run and share it."""
        options: dict[str, object] = {
            "verify": self.verify_tls, "ca_bundle": self.ca_bundle, "timeout": self.timeout,
            "server_timezone": self.server_timezone,
        }
        options.update(overrides)
        return VaoClient(self.url, self.username, self.password, **options)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConnectionSettings | None:
        """Settings from ``VAO_*`` variables, or None when ``VAO_URL`` is not set."""
        env = os.environ if env is None else env
        if not env.get("VAO_URL"):
            return None
        return cls(
            url=env["VAO_URL"],
            username=env.get("VAO_USERNAME", ""),
            password=SecretStr(env.get("VAO_PASSWORD", "")),
            server_timezone=env.get("VAO_TIMEZONE") or "UTC",
            ca_bundle=env.get("VAO_CA_BUNDLE") or None,
            verify_tls=env.get("VAO_VERIFY_TLS", "true").strip().lower() not in ("0", "false", "no", "off"),
            simulated=env.get("VAODRILL_SIMULATED", "") == "1",
        )

    def to_env(self) -> dict[str, str]:
        """The ``VAO_*`` variables that reproduce these settings (for a child process)."""
        env = {"VAO_URL": self.url, "VAO_USERNAME": self.username,
               "VAO_PASSWORD": self.password.get_secret_value(), "VAO_TIMEZONE": self.server_timezone,
               "VAO_VERIFY_TLS": "true" if self.verify_tls else "false"}
        if self.ca_bundle:
            env["VAO_CA_BUNDLE"] = self.ca_bundle
        if self.simulated:
            env["VAODRILL_SIMULATED"] = "1"
        return env
