"""Application checks: after VAO reports a plan's failover complete, prove the service itself came back.

A check is a mapping whose kind key holds its target; the other keys are optional::

    checks:
      - http: https://web.dr.example.com/health      # GET; passes on the expected status (and body)
        status: 200                                  # default 200
        body: "OK"                                   # text the body must contain, or
        body_regex: "version [0-9]+"                 # a regular expression it must match
        ca_bundle: /etc/ssl/dr-ca.pem                # TLS is always verified; this PEM is trusted too
      - tcp: sql.dr.example.com:1433                 # a connection is accepted
      - dns: app.example.com                         # the name resolves (system resolver) ...
        addresses: [10.20.0.5]                       # ... to at least these addresses
      - command: [/usr/local/bin/smoke-test, --quick]   # exit 0 passes; never run through a shell
        name: smoke test                             # default: kind and target
        critical: false                              # default true: failing it fails the plan; false: a warning
        timeout: 10s                                 # one attempt (default 10s)
        retry_every: 5s                              # between attempts (default 5s)
        deadline: 10m                                # after the failover completed (default 10m)

``{vao}`` in a URL stands for the VAO server's origin (``https://vao:9899``) and ``{vao_host}`` in a tcp or dns
target for its host: where the simulator serves the DR site's applications (``{vao}/_apps/<plan>/...``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from vaodrill.spec.durations import DurationField, spec_duration
from vaodrill.spec.strict import StrictModel, show_value

__all__ = ["CHECK_KINDS", "Check", "CheckKind", "unique_check_names"]

CheckKind = Literal["http", "tcp", "dns", "command"]
CHECK_KINDS: tuple[CheckKind, ...] = ("http", "tcp", "dns", "command")
#: The keys each kind may use beyond the common ones.
_OWN_KEYS: dict[CheckKind, frozenset[str]] = {
    "http": frozenset({"status", "body", "body_regex", "ca_bundle"}),
    "tcp": frozenset(),
    "dns": frozenset({"addresses"}),
    "command": frozenset(),
}
_COMMON_KEYS = frozenset({"name", "critical", "timeout", "retry_every", "deadline"})
_MAX_TEXT = 2000
_HOST = re.compile(r"(\{vao_host\}|[A-Za-z0-9_.:-]+|\[[0-9A-Fa-f:.]+\])")
MAX_CHECKS = 50


class Check(StrictModel):
    """One check of a plan. Exactly one of ``http``, ``tcp``, ``dns``, ``command`` is set: its kind."""

    http: str | None = None
    tcp: str | None = None
    dns: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None
    critical: bool = True
    timeout: DurationField = Field(default="10s", validate_default=True)
    retry_every: DurationField = Field(default="5s", validate_default=True)
    deadline: DurationField = Field(default="10m", validate_default=True)
    status: int | None = Field(default=None, ge=100, le=599)
    body: str | None = Field(default=None, max_length=_MAX_TEXT)
    body_regex: str | None = Field(default=None, max_length=_MAX_TEXT)
    ca_bundle: str | None = Field(default=None, max_length=_MAX_TEXT)
    addresses: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _kind_first(cls, data: Any) -> Any:
        """The kind first (``unknown check kind``), then the keys it allows; StrictModel's did-you-mean runs after."""
        if not isinstance(data, Mapping):
            raise PydanticCustomError(
                "check_type", f"expected a check mapping (http: <url>, ...), got {show_value(data)}"
            )
        kinds = [k for k in CHECK_KINDS if k in data]
        if not kinds:
            other = next((str(k) for k in data if k not in _COMMON_KEYS and k not in _ALL_OWN), None)
            shown = f"unknown check kind {show_value(other)}" if other else "no check kind"
            raise PydanticCustomError("check_kind", f"{shown} (expected one of {', '.join(CHECK_KINDS)})")
        if len(kinds) > 1:
            raise PydanticCustomError("check_kind", f"one kind per check, got {' and '.join(kinds)}")
        wrong = [str(k) for k in data if k in _ALL_OWN and k not in _OWN_KEYS[kinds[0]]]
        if wrong:
            raise PydanticCustomError("check_key", f"{wrong[0]!r} is not a key of a {kinds[0]} check")
        return data

    @field_validator("http")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > _MAX_TEXT:
            raise PydanticCustomError("check_url", f"URL of {len(value)} characters (at most {_MAX_TEXT})")
        parts = urlsplit(value.replace("{vao}", "https://vao", 1) if value.startswith("{vao}") else value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PydanticCustomError(
                "check_url", f"expected an http:// or https:// URL (or {{vao}}/...), got {show_value(value)}"
            )
        return value

    @field_validator("tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not _HOST.fullmatch(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise PydanticCustomError("check_tcp", f"expected host:port (port 1 to 65535), got {show_value(value)}")
        return value

    @field_validator("dns")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        if value is not None and (not _HOST.fullmatch(value) or len(value) > 253):
            raise PydanticCustomError("check_dns", f"expected a DNS name, got {show_value(value)}")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise PydanticCustomError(
                "check_command", f"expected a list (program, then arguments), got {show_value(value)}"
            )
        if not value or not all(isinstance(a, str) and a and "\0" not in a and len(a) <= _MAX_TEXT for a in value):
            raise PydanticCustomError("check_command", "expected a non-empty list of non-empty strings")
        return tuple(value)

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError("check_regex", f"invalid regular expression ({exc})") from None
        return value

    @field_validator("addresses", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise PydanticCustomError("check_addresses", f"expected a list of IP addresses, got {show_value(value)}")
        try:
            return tuple(str(ipaddress.ip_address(item)) for item in items)
        except (ValueError, TypeError):
            raise PydanticCustomError("check_addresses", f"expected IP addresses, got {show_value(value)}") from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or len(value) > 200 or not value.isprintable()):
            raise PydanticCustomError("check_name", f"expected a short printable name, got {show_value(value)}")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _timeout_fits(self) -> Check:
        if self.timeout > self.deadline:
            raise PydanticCustomError(
                "check_timeout",
                f"timeout {spec_duration(self.timeout)} is longer than the deadline {spec_duration(self.deadline)}",
            )
        return self

    @property
    def kind(self) -> CheckKind:
        return next(k for k in CHECK_KINDS if getattr(self, k) is not None)

    @property
    def target(self) -> str:
        """What the check looks at, as a user would write it."""
        return " ".join(self.command) if self.command is not None else str(getattr(self, self.kind))

    @property
    def label(self) -> str:
        """The check's name in reports: its ``name``, else kind and target."""
        if self.name:
            return self.name
        return f"{self.kind} {self.command[0] if self.command is not None else self.target}"

    @property
    def expected_status(self) -> int:
        return 200 if self.status is None else self.status

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        """The YAML form: the kind key first, then only what differs from the defaults."""
        data: dict[str, Any] = {self.kind: list(self.command) if self.command is not None else self.target}
        defaults = {
            "timeout": timedelta(seconds=10),
            "retry_every": timedelta(seconds=5),
            "deadline": timedelta(minutes=10),
        }
        for key in ("name", "status", "body", "body_regex", "ca_bundle"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        if self.addresses:
            data["addresses"] = list(self.addresses)
        if not self.critical:
            data["critical"] = False
        for key, default in defaults.items():
            if getattr(self, key) != default:
                data[key] = spec_duration(getattr(self, key))
        return data


_ALL_OWN = frozenset().union(*_OWN_KEYS.values())


def unique_check_names(checks: tuple[Check, ...]) -> str | None:
    """The first label two checks of one plan share (reports and JUnit name checks by it), else None."""
    seen: set[str] = set()
    for check in checks:
        if check.label in seen:
            return check.label
        seen.add(check.label)
    return None
