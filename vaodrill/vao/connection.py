"""Connection settings for one VAO server: the only thing that changes between the simulator and production."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from vaodrill.errors import VaoUsageError, one_line
from vaodrill.vao.client import DEFAULT_TIMEOUT
from vaodrill.vao.orchestrator import Orchestrator, api_of, backend_for
from vaodrill.vao.vocabulary import Vocabulary

log = logging.getLogger("vaodrill.connection")

#: A password file larger than this is not a password file.
MAX_PASSWORD_FILE = 64 * 1024
#: ``VAO_STATES`` larger than this is not a list of state spellings.
MAX_STATES_JSON = 16 * 1024
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: traffic that never leaves this machine."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConnectionSettings(BaseModel):
    """Where VAO is and how to log in. Secrets are never shown by ``repr``, logs or reports.

    Log in with ``username``/``password``, or as a child client with ``client_id``/``client_secret`` (used when
    given; Veeam recommends one for tools). Plain ``http://`` is refused for anything but loopback unless
    ``allow_insecure_http``: the password would cross the network readable. ``states`` teaches vaodrill a
    plan-state spelling its table lacks (``{"Verified (custom)": "idle"}``); a documented one cannot be changed.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)  # inputs may hold secrets

    url: str = Field(title="URL", description="Base URL, e.g. https://vao.example.com:9899 (VRO: .../api/v13)")
    username: str = Field("", description="Account used for drills, e.g. CORP\\svc-drill (or use a child client)")
    password: SecretStr = Field(SecretStr(""), description="Password of that account (never shown)")
    client_id: str | None = Field(
        None, title="Child client ID", description="Log in as a VAO child client (client_credentials) instead"
    )
    client_secret: SecretStr | None = Field(
        None, title="Child client secret", description="Secret of the child client (never shown)"
    )
    server_timezone: str = Field(
        "UTC", title="Server time zone", description="IANA zone of the VAO server's clock, used for restore-point dates"
    )
    verify_tls: bool = Field(True, title="Verify TLS", description="Keep on; use a CA bundle for self-signed certs")
    ca_bundle: str | None = Field(None, title="CA bundle", description="Path of a PEM file to trust")
    timeout: float = Field(
        DEFAULT_TIMEOUT,
        gt=0,
        le=3600,
        title="Timeout (seconds)",
        description="Deadline of one exchange with the server",
    )
    allow_insecure_http: bool = Field(
        False, title="Allow plain HTTP", description="Send credentials over http:// to a host that is not loopback"
    )
    #: True for the embedded simulator (no approval prompts): never offered in a form.
    simulated: SkipJsonSchema[bool] = False
    states: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        title="Extra state spellings",
        description="State spelling -> idle, disabled, failover, undo, running, halted "
        "or other, for a spelling vaodrill does not know",
    )

    @field_validator("states")
    @classmethod
    def _states(cls, value: dict[str, str]) -> dict[str, str]:
        Vocabulary.with_states(value)  # raises ValueError with one line
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"VAO URL must start with https:// (got {one_line(repr(value), 120)})")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"not a usable VAO URL: {one_line(repr(value), 120)}") from None
        if not parts.hostname:
            raise ValueError(f"the VAO URL has no host: {one_line(repr(value), 120)}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the VAO URL must not hold credentials: use the username and password settings")
        try:
            api_of(value)
        except VaoUsageError as exc:
            raise ValueError(str(exc)) from None
        return value.rstrip("/")

    @field_validator("server_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        import pendulum

        try:
            pendulum.timezone(value)
        except Exception:
            raise ValueError(f"unknown time zone {one_line(repr(value), 80)}") from None
        return value

    @model_validator(mode="after")
    def _login_and_transport(self) -> ConnectionSettings:
        if bool(self.client_id) != bool(self.client_secret and self.client_secret.get_secret_value()):
            raise ValueError("client_id and client_secret go together (a child client needs both)")
        if self.insecure_http and not self.allow_insecure_http:
            raise ValueError(
                f"refusing to send credentials over plain http:// to {self.host}: use https://, "
                "or allow it with --allow-insecure-http / VAO_ALLOW_INSECURE_HTTP=true"
            )
        return self

    @property
    def vocabulary(self) -> Vocabulary:
        """How plan states are read on this server: the known spellings plus ``states``."""
        return Vocabulary.with_states(self.states)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def insecure_http(self) -> bool:
        """Credentials would travel unencrypted beyond this machine."""
        return self.url.startswith("http://") and not is_loopback(self.host)

    @property
    def api(self) -> str:
        """``vro`` or ``v2``: the API the URL's path names (``/api/v13``, ``/api/v7.2``, ``/api/v7.21``, ``/v2``)."""
        return api_of(self.url)

    def client(self, **overrides: Any) -> Orchestrator:
        """A new client of the backend the URL names (one login, one pool): make one per drill run and share it."""
        if self.insecure_http:
            log.warning(
                "VAO credentials go over plain http:// to %s (allow_insecure_http): anyone on the path "
                "can read them; use https://",
                self.host,
            )
        options: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "verify": self.verify_tls,
            "ca_bundle": self.ca_bundle,
            "timeout": self.timeout,
            "vocabulary": self.vocabulary,
        }
        options.update(overrides)
        return backend_for(self.url, **options)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConnectionSettings | None:
        """Settings from the ``VAO_*`` variables alone (see :func:`env_fields`), or None when ``VAO_URL`` is not set."""
        env = os.environ if env is None else env
        return cls.resolve(env=env) if env.get("VAO_URL") else None

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, Any] | None = None,
        block: ConnectionSettings | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ConnectionSettings | None:
        """The one way settings are built, field by field: a flag over the block over the environment.

        ``flags``: fields given on the command line; ``block``: a saved ``VaoServer`` block (or the settings a
        CLI hands a flow run; the fields it holds: a saved block holds all), ``env``: ``VAO_*`` variables. An empty
        field (None, "", an empty secret or mapping) is not given and lets the layer below show through. None when
        no layer gives a URL.
        """
        merged: dict[str, Any] = {}
        held = block.model_dump(exclude_unset=True) if block is not None else {}
        for layer in (env_fields(env or {}), held, flags or {}):
            merged.update({key: value for key, value in layer.items() if key in cls.model_fields and _given(value)})
        if "url" not in merged:
            if any(merged.get(k) for k in ("username", "password", "ca_bundle", "client_id", "client_secret")):
                raise VaoUsageError("VAO credentials given but no URL: add --vao-url, set VAO_URL or name a block")
            return None
        try:
            return cls(**merged)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise VaoUsageError(f"VAO settings: {where + ': ' if where else ''}{one_line(error['msg'], 200)}") from None


def _given(value: Any) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return value is not None and value != "" and value != {}


def env_fields(env: Mapping[str, str]) -> dict[str, Any]:
    """The fields the ``VAO_*`` variables give (unset ones are left out).

    The password comes from ``VAO_PASSWORD`` or from the file named by ``VAO_PASSWORD_FILE`` (one trailing
    newline dropped), a child client from ``VAO_CLIENT_ID`` and ``VAO_CLIENT_SECRET``, added state spellings
    from ``VAO_STATES`` (a JSON object).
    """
    fields: dict[str, Any] = {
        "url": env.get("VAO_URL"),
        "username": env.get("VAO_USERNAME"),
        "password": SecretStr(_password(env)),
        "client_id": env.get("VAO_CLIENT_ID"),
        "client_secret": SecretStr(env.get("VAO_CLIENT_SECRET", "")),
        "server_timezone": env.get("VAO_TIMEZONE"),
        "ca_bundle": env.get("VAO_CA_BUNDLE"),
        "timeout": _timeout(env),
        "states": _states(env),
        "simulated": True if env.get("VAODRILL_SIMULATED", "") == "1" else None,
    }
    for name, key in (("VAO_VERIFY_TLS", "verify_tls"), ("VAO_ALLOW_INSECURE_HTTP", "allow_insecure_http")):
        if name in env:
            fields[key] = _flag(env, name, default=False)
    return {key: value for key, value in fields.items() if _given(value)}


def _timeout(env: Mapping[str, str]) -> float | None:
    text = env.get("VAO_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise VaoUsageError(f"VAO_TIMEOUT must be a number of seconds (got {one_line(repr(text), 40)})") from None


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    value = value.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise VaoUsageError(f"{name} must be true or false (got {one_line(repr(value), 40)})")


def _states(env: Mapping[str, str]) -> dict[str, str]:
    """``VAO_STATES``: a JSON object of spelling -> kind (checked by the settings)."""
    text = env.get("VAO_STATES", "").strip()
    if not text:
        return {}
    try:
        if len(text) > MAX_STATES_JSON:
            raise ValueError
        value = json.loads(text)
    except ValueError:
        raise VaoUsageError('VAO_STATES must be a JSON object such as {"Verified (custom)": "idle"}') from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise VaoUsageError('VAO_STATES must be a JSON object of strings such as {"Verified (custom)": "idle"}')
    return value


def _password(env: Mapping[str, str]) -> str:
    """``VAO_PASSWORD``, or the content of ``VAO_PASSWORD_FILE`` (never both)."""
    name = env.get("VAO_PASSWORD_FILE")
    if not name:
        return env.get("VAO_PASSWORD", "")
    if env.get("VAO_PASSWORD"):
        raise VaoUsageError("set VAO_PASSWORD or VAO_PASSWORD_FILE, not both")
    path = Path(name).expanduser()
    try:
        if not path.is_file():
            raise VaoUsageError(f"VAO_PASSWORD_FILE: {path} is not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise VaoUsageError(f"VAO_PASSWORD_FILE: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_PASSWORD_FILE:
        raise VaoUsageError(f"VAO_PASSWORD_FILE: {path} is larger than {MAX_PASSWORD_FILE // 1024} KiB")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise VaoUsageError(f"VAO_PASSWORD_FILE: {path} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")
