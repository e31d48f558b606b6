"""A small, strict SCPI engine for simulated instruments.

It accepts every legal spelling: long or short mnemonics in any case, optional nodes, numeric
channel suffixes, compound commands separated by ``;`` (with SCPI's relative-path rule), common
``*`` commands; it keeps an IEEE 488.2 error queue (``SYSTem:ERRor?``). Instruments declare their
command tree with patterns such as ``[SENSe#]:POWer[:DC]:RANGe:AUTO``.

Hooks for a status system (``simulators.scpi_status``): ``on_error(code)`` is called for every error
queued, ``before_command()`` before each command of a program message runs, and ``output_queued``
counts the replies a program message has produced so far (IEEE 488.2 MAV).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

QUEUE_LENGTH = 30


class ScpiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},\"{message}\"")
        self.code = code
        self.message = message


UNDEFINED_HEADER = (-113, "Undefined header")
SUFFIX_OUT_OF_RANGE = (-114, "Header suffix out of range")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
DATA_TYPE_ERROR = (-104, "Data type error")
ILLEGAL_VALUE = (-224, "Illegal parameter value")
OUT_OF_RANGE = (-222, "Data out of range")
QUEUE_OVERFLOW = (-350, "Queue overflow")


@dataclass
class _Node:
    long: str
    short: str
    optional: bool
    suffix: bool


def compile_pattern(pattern: str) -> list[_Node]:
    """``[SENSe#]:POWer[:DC]:UNIT`` -> nodes (short form = the upper-case letters of the long form)."""
    nodes = []
    for optional, name in re.findall(r"(\[)?:?([A-Za-z*]+#?)\]?", pattern):
        suffix = name.endswith("#")
        name = name.rstrip("#")
        short = "".join(ch for ch in name if ch.isupper() or ch == "*") or name
        nodes.append(_Node(name.upper(), short.upper(), bool(optional), suffix))
    return nodes


def _match(nodes: list[_Node], tokens: list[str]) -> list[int] | None:
    """Match header tokens against nodes; return the suffixes seen, or None."""
    if not nodes:
        return [] if not tokens else None
    node, rest = nodes[0], nodes[1:]
    if tokens:
        m = re.fullmatch(r"([A-Za-z*]+?)(\d*)", tokens[0])
        if m:
            name, digits = m.group(1).upper(), m.group(2)
            if name in (node.short, node.long) and (not digits or node.suffix):
                tail = _match(rest, tokens[1:])
                if tail is not None:
                    return [int(digits)] + tail if digits else tail
    if node.optional:
        return _match(rest, tokens)
    return None


@dataclass
class Command:
    pattern: str
    set: Callable[[list[str]], None] | None = None
    query: Callable[[list[str]], str] | None = None
    nodes: list[_Node] = field(default_factory=list)


@dataclass
class Outcome:
    """What one command of a line produced: a reply line, success, or an error."""

    reply: str | None = None
    error: ScpiError | None = None


def split_params(text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    return [p.strip().strip('"') for p in re.findall(r'"[^"]*"|[^,]+', text)]


def parse_bool(args: list[str]) -> bool:
    value = one_param(args).upper()
    if value in ("1", "ON"):
        return True
    if value in ("0", "OFF"):
        return False
    raise ScpiError(*ILLEGAL_VALUE)


def one_param(args: list[str]) -> str:
    if not args:
        raise ScpiError(*MISSING_PARAMETER)
    if len(args) > 1:
        raise ScpiError(*PARAMETER_NOT_ALLOWED)
    return args[0]


def parse_number(args: list[str], minimum: float | None = None, maximum: float | None = None, default: float | None = None) -> float:
    """A numeric parameter; ``MIN``/``MAX``/``DEF`` map to the given bounds; out of bounds: -222."""
    word = one_param(args).upper()
    aliases = {"MIN": minimum, "MINIMUM": minimum, "MAX": maximum, "MAXIMUM": maximum, "DEF": default, "DEFAULT": default}
    if word in aliases and aliases[word] is not None:
        return float(aliases[word])  # type: ignore[arg-type]
    try:
        value = float(word)
    except ValueError:
        raise ScpiError(*DATA_TYPE_ERROR) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ScpiError(*OUT_OF_RANGE)
    return value


class ScpiInstrument:
    """Command table, parser and error queue. Subclasses add commands and format replies."""

    #: how replies are terminated on the wire
    terminator = "\n"
    #: whether the instrument answers commands that are not queries (OBIS handshake: yes)
    replies_to_sets = False

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.errors: deque[tuple[int, str]] = deque()
        self.output_queued = 0
        self.add("*CLS", set=lambda a: self.clear_status())
        self.add("SYSTem:ERRor[:NEXT]", query=lambda a: self.pop_error())
        self.add("SYSTem:ERRor:COUNt", query=lambda a: str(len(self.errors)))

    def add(self, pattern: str, set: Callable[[list[str]], None] | None = None, query: Callable[[list[str]], str] | None = None) -> None:
        self.commands.append(Command(pattern, set, query, compile_pattern(pattern)))

    def clear_status(self) -> None:
        """``*CLS``: empty the error queue (a status system also clears its event registers)."""
        self.errors.clear()

    def on_error(self, code: int) -> None:
        """Called for every error queued (a status system sets its event bits here)."""

    def before_command(self) -> None:
        """Called before each command of a program message runs."""

    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= QUEUE_LENGTH:
            self.errors[-1] = QUEUE_OVERFLOW
        else:
            self.errors.append((code, message))
        self.on_error(code)

    def pop_error(self) -> str:
        code, message = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code},"{message}"'

    def find(self, tokens: list[str], is_query: bool) -> tuple[Command, list[int]] | None:
        for cmd in self.commands:
            if (cmd.query if is_query else cmd.set) is None:
                continue
            suffixes = _match(cmd.nodes, tokens)
            if suffixes is not None:
                return cmd, suffixes
        return None

    def execute(self, line: str) -> list[Outcome]:
        """Run every command of a (compound) program message."""
        outcomes: list[Outcome] = []
        prefix: list[str] = []
        self.output_queued = 0
        for part in line.split(";"):
            part = part.strip()
            if not part:
                continue
            self.before_command()
            self.output_queued = sum(1 for o in outcomes if o.reply is not None)
            header, _, rest = part.partition(" ")
            is_query = header.endswith("?")
            header = header.rstrip("?")
            absolute = header.startswith(":") or header.startswith("*")
            tokens = [t for t in header.lstrip(":").split(":")]
            if any(not t for t in tokens):
                outcomes.append(Outcome(error=ScpiError(-102, "Syntax error")))
                continue
            found, used = None, tokens
            if not absolute and prefix:
                found, used = self.find(prefix + tokens, is_query), prefix + tokens
            if found is None:
                found, used = self.find(tokens, is_query), tokens
            if found is None:
                outcomes.append(Outcome(error=ScpiError(*UNDEFINED_HEADER)))
                continue
            cmd, suffixes = found
            if any(s != 1 for s in suffixes):
                outcomes.append(Outcome(error=ScpiError(*SUFFIX_OUT_OF_RANGE)))
                continue
            if not header.startswith("*"):
                prefix = used[:-1]
            args = split_params(rest)
            try:
                if is_query:
                    outcomes.append(Outcome(reply=cmd.query(args)))  # type: ignore[misc]
                else:
                    cmd.set(args)  # type: ignore[misc]
                    outcomes.append(Outcome())
            except ScpiError as exc:
                outcomes.append(Outcome(error=exc))
        return outcomes

    def respond(self, line: str) -> list[str]:
        """IEEE 488.2 behaviour: replies of queries joined by ``;``; errors go to the queue."""
        replies = []
        for outcome in self.execute(line):
            if outcome.error is not None:
                self.push_error(outcome.error.code, outcome.error.message)
            elif outcome.reply is not None:
                replies.append(outcome.reply)
        return [";".join(replies)] if replies else []

    def fault_error(self) -> list[str]:
        """Reply for an injected instrument error (the command was not carried out)."""
        self.push_error(-300, "Device-specific error")
        return []

    @staticmethod
    def is_query(line: str) -> bool:
        return any(part.strip().split(" ")[0].endswith("?") for part in line.split(";"))
