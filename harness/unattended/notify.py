"""Notifications when a verdict fails, a run fails or a scheduled job is skipped: e-mail over SMTP
and/or JSON posted to HTTP webhooks.

Events: ``fail``/``warn`` (QC verdicts), ``run_failed`` (the measurement could not be completed),
``analysis_failed`` (measured, but the analysis failed), ``interrupted``, ``skipped`` and ``unsafe``
(the safe state was NOT confirmed: a laser may still be on). ``unsafe`` is always sent, whatever
``on:`` says, at top priority (e-mail ``X-Priority: 1``/``Importance: high``; webhook ``priority:
urgent``).

Secrets never sit in the configuration: it names environment variables (the SMTP password, a webhook
URL that carries a token, header values), read only when a notification is sent. A delivery that
fails does not raise: it is returned as a ``Delivery`` with ok=False and an error text from which
every secret has been redacted, as it is from log output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness import __version__

log = logging.getLogger(__name__)

Event = Literal["fail", "warn", "run_failed", "analysis_failed", "skipped", "interrupted", "unsafe"]
DEFAULT_EVENTS: tuple[Event, ...] = ("fail", "run_failed", "analysis_failed", "interrupted", "skipped")
EVENTS: tuple[str, ...] = ("fail", "warn", "run_failed", "analysis_failed", "skipped", "interrupted", "unsafe")
ALWAYS: tuple[str, ...] = ("unsafe",)  # sent whatever ``on:`` says
REDACTED = "***"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmtpConfig(_Model):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS before logging in (without it a password travels in clear)")
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=_ENV_NAME, description="name of the environment variable holding the password")
    from_addr: str = Field(min_length=3)
    to_addrs: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpConfig:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("give both username and password_env, or neither")
        return self


class WebhookConfig(_Model):
    name: str = Field(default="", description="a label for reports and logs (the URL may be secret)")
    url: str | None = Field(default=None, description="the URL itself, if it holds no secret")
    url_env: str | None = Field(default=None, pattern=_ENV_NAME, description="name of the environment variable holding the URL")
    headers_env: dict[str, str] = Field(default_factory=dict, description="header name -> name of the environment variable holding its value")
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        if self.url is not None:
            _check_url(self.url)
        return self

    @field_validator("headers_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for header, var in value.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header):
                raise ValueError(f"{header!r} is not a valid header name")
            if not re.fullmatch(_ENV_NAME, var):
                raise ValueError(f"header {header}: {var!r} is not an environment variable name")
        return value


class NotifyConfig(_Model):
    smtp: SmtpConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    on: list[Event] = Field(default_factory=lambda: list(DEFAULT_EVENTS),
                            description="events to notify; 'unsafe' (safe state not confirmed) is always sent")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        """YAML 1.1 (PyYAML) reads an unquoted ``on:`` key as the boolean True."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


@dataclass(frozen=True)
class Delivery:
    """One attempt to notify through one channel; ``error`` never holds a secret."""

    channel: str
    ok: bool
    error: str | None = None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (also URL-encoded) replaced by ``***``; longest secrets first."""
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants.update({secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), repr(secret)[1:-1]})
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    return text


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook URL must start with http:// or https:// and name a host")


def _url_secrets(url: str) -> list[str]:
    """A secret URL and its parts that may show up alone in an error (path, query, credentials)."""
    parts = urllib.parse.urlsplit(url)
    pieces = [parts.query, parts.password or "", parts.username or "", parts.path]
    return [url] + [p for p in pieces if len(p) >= 4]  # shorter pieces would blank out common text


class Notifier:
    """Sends one notification to every configured channel, if the event is one the config wants."""

    def __init__(self, config: NotifyConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = os.environ if env is None else env

    def channels(self) -> list[str]:
        """The channel labels, as in ``Delivery.channel`` (no secret: webhooks by name or number)."""
        names = [] if self.config.smtp is None else [f"smtp:{self.config.smtp.host}:{self.config.smtp.port}"]
        return names + [_hook_channel(i, hook) for i, hook in enumerate(self.config.webhooks)]

    def wants(self, event: str) -> bool:
        _check_event(event)
        return event in ALWAYS or event in self.config.on

    def check(self) -> list[str]:
        """Problems that would stop a notification (missing variables, nothing configured)."""
        problems = []
        if self.config.smtp is None and not self.config.webhooks:
            problems.append("notifications: no smtp and no webhooks configured")
        if self.config.smtp is not None:
            problems += self._smtp_problems(self.config.smtp)
        for i, hook in enumerate(self.config.webhooks):
            problems += self._webhook_problems(hook, _hook_channel(i, hook))
        return problems

    def send(self, event: str, subject: str, body: str, details: Mapping[str, Any] | None = None) -> list[Delivery]:
        """Notify every channel if ``event`` is in ``config.on``; never raises for a failed delivery."""
        if not self.wants(event):
            return []
        secrets = self._secrets()
        subject, body = redact(subject, secrets), redact(body, secrets)
        clean = _redact_tree(dict(details or {}), secrets)
        deliveries = []
        if self.config.smtp is not None:
            channel = self.channels()[0]
            deliveries.append(self._attempt(channel, secrets, self._send_mail, self.config.smtp, event, subject, body, clean))
        for i, hook in enumerate(self.config.webhooks):
            channel = _hook_channel(i, hook)
            deliveries.append(self._attempt(channel, secrets, self._post, hook, channel, event, subject, body, clean))
        return deliveries

    # -- internals -------------------------------------------------------------------------------

    def _attempt(self, channel: str, secrets: list[str], action: Any, *args: Any) -> Delivery:
        try:
            action(*args)
        except Exception as error:  # a delivery failure is reported, never raised
            text = redact(_describe(error), secrets)
            log.warning("notification via %s failed: %s", channel, text)
            return Delivery(channel, False, text)
        log.info("notification sent via %s", channel)
        return Delivery(channel, True)

    def _smtp_problems(self, smtp: SmtpConfig) -> list[str]:
        if smtp.password_env is None:
            return []
        return _env_problem(self.env, smtp.password_env, f"smtp {smtp.host}: password_env")

    def _webhook_problems(self, hook: WebhookConfig, channel: str) -> list[str]:
        problems = []
        if hook.url_env is not None:
            problems += _env_problem(self.env, hook.url_env, f"{channel}: url_env")
            if not problems:
                try:
                    _check_url(self.env[hook.url_env])
                except ValueError as error:
                    problems.append(f"{channel}: environment variable {hook.url_env}: {error}")
        for header, var in hook.headers_env.items():
            problems += _env_problem(self.env, var, f"{channel}: header {header}")
        return problems

    def _secrets(self) -> list[str]:
        names = []
        if self.config.smtp is not None and self.config.smtp.password_env:
            names.append(self.config.smtp.password_env)
        for hook in self.config.webhooks:
            names += list(hook.headers_env.values())
        values = [self.env.get(n, "") for n in names]
        for hook in self.config.webhooks:
            if hook.url_env is not None and self.env.get(hook.url_env):
                values += _url_secrets(self.env[hook.url_env])
        return [v for v in values if v]

    def _send_mail(self, smtp: SmtpConfig, event: str, subject: str, body: str, details: dict[str, Any]) -> None:
        password = None
        if smtp.password_env is not None:
            if problems := self._smtp_problems(smtp):
                raise _Failed("; ".join(problems))
            password = self.env[smtp.password_env]
        message = EmailMessage()
        message["Subject"] = " ".join(subject.split())  # no line breaks in a header
        message["From"] = smtp.from_addr
        message["To"] = ", ".join(smtp.to_addrs)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain="microscope-qc")
        message["X-QC-Event"] = event
        if event in ALWAYS:
            message["X-Priority"] = "1 (Highest)"
            message["Importance"] = "high"
            message["Priority"] = "urgent"
        text = body
        if details:
            text += "\n\nDetails:\n" + json.dumps(details, indent=2, default=str, ensure_ascii=False)
        message.set_content(text)
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username is not None and password is not None:
                client.login(smtp.username, password)
            client.send_message(message, from_addr=smtp.from_addr, to_addrs=smtp.to_addrs)

    def _post(self, hook: WebhookConfig, channel: str, event: str, subject: str, body: str, details: dict[str, Any]) -> None:
        if problems := self._webhook_problems(hook, channel):
            raise _Failed("; ".join(problems))
        url = hook.url if hook.url is not None else self.env[hook.url_env or ""]
        payload = {
            "event": event,
            "priority": "urgent" if event in ALWAYS else "normal",
            "subject": subject,
            "body": body,
            "details": details,
            "text": f"{subject}\n{body}",  # what Slack/Mattermost-style webhooks display
            "sent": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": f"microscope-qc {__version__}",
        }
        headers = {"Content-Type": "application/json", "User-Agent": f"microscope-qc/{__version__}"}
        headers.update({header: self.env[var] for header, var in hook.headers_env.items()})
        request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            try:
                reply = error.read(300).decode("utf-8", "replace").strip()
            except OSError:
                reply = ""
            raise _Failed(f"HTTP {error.code} {error.reason}" + (f": {reply}" if reply else "")) from None
        if not 200 <= status < 300:
            raise _Failed(f"HTTP {status}")


class _Failed(Exception):
    """A delivery failure whose message is already complete."""


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; known: {', '.join(EVENTS)}")


def _env_problem(env: Mapping[str, str], name: str, what: str) -> list[str]:
    if name not in env:
        return [f"{what}: environment variable {name} is not set"]
    if not env[name]:
        return [f"{what}: environment variable {name} is empty"]
    return []


def _hook_channel(index: int, hook: WebhookConfig) -> str:
    return f"webhook:{hook.name or index + 1}"


def _redact_tree(value: Any, secrets: list[str]) -> Any:
    """Details with every string (key or value) redacted; other values kept, unknown types as text."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact(str(k), secrets): _redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_tree(v, secrets) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value), secrets)


def _describe(error: BaseException) -> str:
    if isinstance(error, _Failed):
        return str(error)
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error.decode("utf-8", "replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
        return f"SMTP {error.smtp_code}: {reply}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
        return f"cannot connect: {text}"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot connect: {error.strerror}"
    return f"{type(error).__name__}: {error}"
