"""Notifications: e-mail to a real SMTP server (aiosmtpd) and JSON to a real HTTP server, both on
127.0.0.1; secrets from environment variables, never in results, errors or logs; event filtering."""

from __future__ import annotations

import email
import json
import logging
import socket
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError

from harness.unattended.notify import Delivery, Notifier, NotifyConfig, SmtpConfig, WebhookConfig, redact

pytestmark = pytest.mark.fast  # the quick subset: pytest -m fast

PASSWORD = "pw-Sw0rdf1sh/+&"
TOKEN = "tok-9f8e7d6c5b4a"
HEADER_SECRET = "Bearer hdr-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# -- servers -----------------------------------------------------------------------------------


class MailBox:
    def __init__(self) -> None:
        self.messages: list[tuple[Message, str, list[str], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        self.messages.append((message, envelope.mail_from, list(envelope.rcpt_tos), session.auth_data))
        return "250 Message accepted"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"qc-bot" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False, auth_data="qc-bot" if ok else None)


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[int, MailBox]]:
    box = MailBox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[int, MailBox]) -> MailBox:
    smtp_server[1].messages.clear()
    return smtp_server[1]


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        if self.path.startswith("/fail"):
            # a careless server that echoes the token back in its error reply
            reply = f"internal error for {self.path} auth={self.headers.get('Authorization')}".encode()
            self.send_response(500)
        else:
            reply = b""
            self.send_response(204)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def hook_calls(http_server: int) -> list[dict[str, Any]]:
    Hook.received.clear()
    return Hook.received


def smtp(port: int, **extra: Any) -> SmtpConfig:
    base = {"host": "127.0.0.1", "port": port, "starttls": False, "from_addr": "qc@lab.example",
            "to_addrs": ["facility@lab.example", "pi@lab.example"], "timeout_s": 5}
    return SmtpConfig(**(base | extra))


def secrets_absent(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, TOKEN, HEADER_SECRET, "hdr-0123456789abcdef"):
            assert secret not in text


# -- redact ------------------------------------------------------------------------------------


def test_redact_replaces_every_secret_and_its_url_encodings() -> None:
    text = f"login {PASSWORD} failed; GET /hook?t={TOKEN}; quoted pw-Sw0rdf1sh%2F%2B%26 plus pw-Sw0rdf1sh%2F%2B%26"
    out = redact(text, [PASSWORD, TOKEN])
    assert out == "login *** failed; GET /hook?t=***; quoted *** plus ***"


def test_redact_longest_first_ignores_empty_and_leaves_clean_text_alone() -> None:
    assert redact("abcdef abc", ["abc", "abcdef", ""]) == "*** ***"
    assert redact("nothing secret here", []) == "nothing secret here"
    assert redact("nothing secret here", [""]) == "nothing secret here"


# -- configuration -----------------------------------------------------------------------------


def test_config_models_forbid_unknown_fields_and_bad_combinations() -> None:
    with pytest.raises(ValidationError, match="extra"):
        NotifyConfig.model_validate({"smtp": None, "webhooks": [], "on": ["fail"], "retries": 3})
    with pytest.raises(ValidationError, match="password\n  Extra inputs are not permitted"):
        SmtpConfig(host="h", from_addr="a@b.c", to_addrs=["x@y.z"], password="plain")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="both username and password_env"):
        SmtpConfig(host="h", from_addr="a@b.c", to_addrs=["x@y.z"], username="u")
    with pytest.raises(ValidationError, match="password_env"):  # a secret pasted in place of a variable name
        SmtpConfig(host="h", from_addr="a@b.c", to_addrs=["x@y.z"], username="u", password_env=PASSWORD)
    with pytest.raises(ValidationError, match="exactly one of url and url_env"):
        WebhookConfig()
    with pytest.raises(ValidationError, match="exactly one of url and url_env"):
        WebhookConfig(url="https://h.example/x", url_env="HOOK_URL")
    with pytest.raises(ValidationError, match="http:// or https://"):
        WebhookConfig(url="ftp://h.example/x")
    with pytest.raises(ValidationError, match="not an environment variable name"):
        WebhookConfig(url="https://h.example/x", headers_env={"Authorization": "Bearer abc"})
    with pytest.raises(ValidationError):
        NotifyConfig(on=["fail", "exploded"])  # type: ignore[list-item]
    assert NotifyConfig().on == ["fail", "run_failed", "analysis_failed", "interrupted", "skipped"]
    assert NotifyConfig.model_validate({True: ["warn"]}).on == ["warn"]  # YAML 1.1 reads a bare `on:` key as True


def test_check_names_missing_and_empty_variables_without_values() -> None:
    config = NotifyConfig(
        smtp=SmtpConfig(host="mail", from_addr="a@b.c", to_addrs=["x@y.z"], username="u", password_env="QC_SMTP_PW"),
        webhooks=[WebhookConfig(name="chat", url_env="QC_HOOK_URL", headers_env={"Authorization": "QC_HOOK_AUTH"})],
    )
    problems = Notifier(config, env={"QC_HOOK_AUTH": ""}).check()
    assert problems == [
        "smtp mail: password_env: environment variable QC_SMTP_PW is not set",
        "webhook:chat: url_env: environment variable QC_HOOK_URL is not set",
        "webhook:chat: header Authorization: environment variable QC_HOOK_AUTH is empty",
    ]
    env = {"QC_SMTP_PW": PASSWORD, "QC_HOOK_URL": f"https://chat.example/hooks/{TOKEN}", "QC_HOOK_AUTH": HEADER_SECRET}
    assert Notifier(config, env=env).check() == []
    bad_url = Notifier(config, env=env | {"QC_HOOK_URL": TOKEN}).check()
    assert len(bad_url) == 1 and "QC_HOOK_URL" in bad_url[0] and "http://" in bad_url[0]
    secrets_absent(*bad_url)
    assert Notifier(NotifyConfig(), env={}).check() == ["notifications: no smtp and no webhooks configured"]


# -- e-mail ------------------------------------------------------------------------------------


def test_mail_reaches_the_smtp_server(smtp_server: tuple[int, MailBox], mailbox: MailBox) -> None:
    notifier = Notifier(NotifyConfig(smtp=smtp(smtp_server[0])), env={})
    deliveries = notifier.send("fail", "QC FAIL: Scope A power stability", "2 of 5 metrics failed.",
                               {"run": "2024-05-01_power", "failed": ["drift", "noise"]})
    assert deliveries == [Delivery(f"smtp:127.0.0.1:{smtp_server[0]}", True, None)]
    (message, mail_from, rcpt, auth), = mailbox.messages
    assert message["Subject"] == "QC FAIL: Scope A power stability"
    assert message["From"] == "qc@lab.example" and mail_from == "qc@lab.example"
    assert rcpt == ["facility@lab.example", "pi@lab.example"]
    assert message["X-QC-Event"] == "fail"
    text = message.get_payload(decode=True).decode()
    assert text.startswith("2 of 5 metrics failed.")
    assert '"run": "2024-05-01_power"' in text and '"drift"' in text
    assert auth is None


def test_mail_logs_in_with_the_password_from_the_environment(smtp_server: tuple[int, MailBox], mailbox: MailBox, caplog) -> None:
    config = NotifyConfig(smtp=smtp(smtp_server[0], username="qc-bot", password_env="QC_SMTP_PW"), on=["run_failed"])
    caplog.set_level(logging.DEBUG, logger="harness")
    ok = Notifier(config, env={"QC_SMTP_PW": PASSWORD}).send("run_failed", "run failed", "laser did not answer")
    assert ok[0].ok, ok
    assert mailbox.messages[-1][3] == "qc-bot"  # authenticated session

    wrong = Notifier(config, env={"QC_SMTP_PW": PASSWORD + "x"}).send("run_failed", "run failed", "again")
    assert not wrong[0].ok and wrong[0].error.startswith("SMTP 535")
    assert len(mailbox.messages) == 1
    secrets_absent(repr(ok), repr(wrong), caplog.text)


# -- webhooks ----------------------------------------------------------------------------------


def test_webhook_receives_json_and_headers_from_the_environment(http_server: int, hook_calls: list, caplog) -> None:
    config = NotifyConfig(
        webhooks=[WebhookConfig(name="facility-chat", url_env="QC_HOOK_URL", headers_env={"Authorization": "QC_HOOK_AUTH"})],
        on=["skipped"],
    )
    env = {"QC_HOOK_URL": f"http://127.0.0.1:{http_server}/hooks/{TOKEN}?key={TOKEN}", "QC_HOOK_AUTH": HEADER_SECRET}
    caplog.set_level(logging.DEBUG, logger="harness")
    deliveries = Notifier(config, env=env).send("skipped", "job skipped", "station busy", {"job": "nightly", "n": 3})
    assert deliveries == [Delivery("webhook:facility-chat", True, None)]
    (call,) = hook_calls
    assert call["path"] == f"/hooks/{TOKEN}?key={TOKEN}"
    assert call["headers"]["Authorization"] == HEADER_SECRET
    assert call["headers"]["Content-Type"] == "application/json"
    payload = call["json"]
    assert payload["event"] == "skipped" and payload["subject"] == "job skipped" and payload["body"] == "station busy"
    assert payload["details"] == {"job": "nightly", "n": 3}
    assert payload["text"] == "job skipped\nstation busy"
    secrets_absent(repr(deliveries), caplog.text)


def test_a_webhook_error_reply_is_a_failed_delivery_with_secrets_redacted(http_server: int, hook_calls: list, caplog) -> None:
    config = NotifyConfig(webhooks=[WebhookConfig(url_env="QC_HOOK_URL", headers_env={"Authorization": "QC_HOOK_AUTH"})])
    env = {"QC_HOOK_URL": f"http://127.0.0.1:{http_server}/fail/{TOKEN}", "QC_HOOK_AUTH": HEADER_SECRET}
    caplog.set_level(logging.DEBUG, logger="harness")
    (delivery,) = Notifier(config, env=env).send("fail", "s", "b")
    assert len(hook_calls) == 1
    assert not delivery.ok and delivery.channel == "webhook:1"
    assert delivery.error.startswith("HTTP 500")
    assert delivery.error == "HTTP 500 Internal Server Error: internal error for *** auth=***"  # a secret URL's path too
    secrets_absent(repr(delivery), caplog.text)


def test_secrets_in_the_message_itself_are_redacted_before_sending(http_server: int, hook_calls: list) -> None:
    config = NotifyConfig(webhooks=[WebhookConfig(url=f"http://127.0.0.1:{http_server}/h", headers_env={"X-Key": "QC_KEY"})])
    (delivery,) = Notifier(config, env={"QC_KEY": TOKEN}).send(
        "fail", f"subject {TOKEN}", f"body {TOKEN}", {"note": f"key={TOKEN}", TOKEN: [TOKEN, 1.5, None]}
    )
    assert delivery.ok
    payload = hook_calls[0]["json"]
    assert payload["subject"] == "subject ***" and payload["body"] == "body ***"
    assert payload["details"] == {"note": "key=***", "***": ["***", 1.5, None]}


# -- failures, filtering -----------------------------------------------------------------------


def test_down_servers_give_failed_deliveries_without_secrets(caplog) -> None:
    smtp_port, hook_port = free_port(), free_port()
    config = NotifyConfig(
        smtp=smtp(smtp_port, username="qc-bot", password_env="QC_SMTP_PW"),
        webhooks=[WebhookConfig(name="chat", url_env="QC_HOOK_URL", headers_env={"Authorization": "QC_HOOK_AUTH"}, timeout_s=5)],
    )
    env = {"QC_SMTP_PW": PASSWORD, "QC_HOOK_URL": f"http://127.0.0.1:{hook_port}/hooks/{TOKEN}", "QC_HOOK_AUTH": HEADER_SECRET}
    caplog.set_level(logging.DEBUG, logger="harness")
    deliveries = Notifier(config, env=env).send("run_failed", "run failed", "details")
    assert [d.channel for d in deliveries] == [f"smtp:127.0.0.1:{smtp_port}", "webhook:chat"]
    assert [d.ok for d in deliveries] == [False, False]
    for delivery in deliveries:
        assert delivery.error and delivery.error.startswith("cannot connect")
    assert "failed" in caplog.text
    secrets_absent(repr(deliveries), caplog.text)


def test_a_missing_variable_at_send_time_is_a_failed_delivery(http_server: int, hook_calls: list) -> None:
    config = NotifyConfig(webhooks=[WebhookConfig(name="chat", url_env="QC_HOOK_URL")])
    (delivery,) = Notifier(config, env={}).send("fail", "s", "b")
    assert delivery == Delivery("webhook:chat", False, "webhook:chat: url_env: environment variable QC_HOOK_URL is not set")
    assert hook_calls == []


def test_only_the_configured_events_are_sent(http_server: int, hook_calls: list) -> None:
    notifier = Notifier(NotifyConfig(webhooks=[WebhookConfig(url=f"http://127.0.0.1:{http_server}/h")], on=["fail", "interrupted"]))
    assert notifier.send("skipped", "s", "b") == []
    assert notifier.send("warn", "s", "b") == []
    assert notifier.wants("interrupted") and not notifier.wants("run_failed")
    assert [d.ok for d in notifier.send("fail", "s", "b")] == [True]
    assert [c["json"]["event"] for c in hook_calls] == ["fail"]
    with pytest.raises(ValueError, match="unknown notification event 'failed'"):
        notifier.send("failed", "s", "b")


def test_mail_and_webhook_together(smtp_server: tuple[int, MailBox], mailbox: MailBox, http_server: int, hook_calls: list) -> None:
    config = NotifyConfig(smtp=smtp(smtp_server[0]), webhooks=[WebhookConfig(url=f"http://127.0.0.1:{http_server}/h")], on=["warn"])
    deliveries = Notifier(config, env={}).send("warn", "QC WARN", "close to the limit")
    assert [(d.channel, d.ok) for d in deliveries] == [(f"smtp:127.0.0.1:{smtp_server[0]}", True), ("webhook:1", True)]
    assert len(mailbox.messages) == 1 and len(hook_calls) == 1


def test_a_multi_line_subject_is_folded_into_one_header_line(smtp_server: tuple[int, MailBox], mailbox: MailBox) -> None:
    (delivery,) = Notifier(NotifyConfig(smtp=smtp(smtp_server[0])), env={}).send("fail", "QC FAIL\r\nBcc: x@evil.example", "b")
    assert delivery.ok
    message = mailbox.messages[0][0]
    assert message["Subject"] == "QC FAIL Bcc: x@evil.example" and message["Bcc"] is None


def test_unsafe_is_always_sent_at_top_priority_whatever_on_says(smtp_server: tuple[int, MailBox], mailbox: MailBox,
                                                                 http_server: int, hook_calls: list) -> None:
    """The safe state not confirmed (a laser may still be on): sent even when ``on:`` names nothing
    of the kind, marked urgent in the e-mail headers and the webhook payload."""
    config = NotifyConfig(smtp=smtp(smtp_server[0]), webhooks=[WebhookConfig(url=f"http://127.0.0.1:{http_server}/h")], on=["warn"])
    notifier = Notifier(config, env={})
    assert notifier.wants("unsafe") and not notifier.wants("run_failed")
    deliveries = notifier.send("unsafe", "URGENT [microscope-qc] Scope A: safe state NOT confirmed", "Laser488: connection lost")
    assert [d.ok for d in deliveries] == [True, True]
    message = mailbox.messages[0][0]
    assert message["X-QC-Event"] == "unsafe" and message["X-Priority"].startswith("1") and message["Importance"] == "high"
    assert message["Subject"].startswith("URGENT")
    assert hook_calls[0]["json"]["event"] == "unsafe" and hook_calls[0]["json"]["priority"] == "urgent"
    # an ordinary event is not urgent
    notifier.send("warn", "QC warning", "b")
    assert mailbox.messages[1][0]["X-Priority"] is None and hook_calls[1]["json"]["priority"] == "normal"


def test_analysis_failed_is_an_event_of_its_own(http_server: int, hook_calls: list) -> None:
    notifier = Notifier(NotifyConfig(webhooks=[WebhookConfig(url=f"http://127.0.0.1:{http_server}/h")], on=["analysis_failed"]))
    assert notifier.wants("analysis_failed") and not notifier.wants("run_failed") and not notifier.wants("fail")
    assert [d.ok for d in notifier.send("analysis_failed", "analysis failed", "no signal above the dark level")] == [True]
    assert hook_calls[0]["json"]["event"] == "analysis_failed"
    assert NotifyConfig.model_validate({"on": ["unsafe", "analysis_failed"]}).on == ["unsafe", "analysis_failed"]
