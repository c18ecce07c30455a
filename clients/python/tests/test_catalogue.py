"""Drift tests: the exceptions against the server's error catalogue, and the routes against the
methods of both clients and the background sender."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from support import REPO

import belfry
from belfry import routes
from belfry.errors import error_from_response


def server_error_codes() -> list[str]:
    """`ErrorCode::ALL` of crates/belfry/src/protocol.rs, as wire text, in order."""
    source = (REPO / "crates/belfry/src/protocol.rs").read_text()
    all_block = re.search(r"pub const ALL: \[ErrorCode; \d+\] = \[(.*?)\];", source, re.S)
    assert all_block, "ErrorCode::ALL not found in protocol.rs"
    names = re.findall(r"ErrorCode::(\w+)", all_block.group(1))
    wire = dict(re.findall(r'ErrorCode::(\w+) => "(\w+)"', source))
    return [wire[n] for n in names]


def sdk_error_codes() -> list[str]:
    """`export const ErrorCode = { … }` of clients/js/src/core/codes.ts, as protocol.rs's test
    reads it."""
    lines = Path(REPO / "clients/js/src/core/codes.ts").read_text().splitlines()
    start = lines.index("export const ErrorCode = {")
    out = []
    for line in lines[start + 1 :]:
        if line.strip().startswith("}"):
            break
        out.append(line.split(":", 1)[1].strip().rstrip(",").strip('"'))
    return out


def test_the_exceptions_mirror_the_server_error_catalogue_in_order() -> None:
    assert list(belfry.ERROR_CODES) == server_error_codes()
    assert list(belfry.ERROR_CODES) == sdk_error_codes()


def test_each_code_becomes_its_exception_with_fields_and_retry_after() -> None:
    for code, cls in belfry.ERROR_CODES.items():
        body = f'{{"error":{{"code":"{code}","message":"m","fields":{{"a":"b"}}}}}}'.encode()
        error = error_from_response(429, {"retry-after": "3"}, body)
        assert type(error) is cls and error.code == code
        assert error.fields == {"a": "b"} and error.retry_after == 3
        assert cls.__doc__, f"{cls.__name__} needs a docstring"


def test_a_body_that_is_not_belfrys_is_an_unexpected_response() -> None:
    error = error_from_response(502, {}, b"<html>Bad Gateway</html>")
    assert type(error) is belfry.UnexpectedResponse and "Bad Gateway" in str(error)
    unknown = error_from_response(418, {}, b'{"error":{"code":"teapot","message":"m"}}')
    assert type(unknown) is belfry.UnexpectedResponse and "teapot" in unknown.message


def test_every_route_is_a_method_of_both_clients() -> None:
    built = [
        name
        for name, fn in inspect.getmembers(routes, inspect.isfunction)
        if fn.__module__ == routes.__name__
        and not name.startswith("_")
        and "Call[" in str(inspect.signature(fn).return_annotation)
    ]
    assert "notify" in built and len(built) >= 5
    for name in built:
        for cls in (belfry.Belfry, belfry.AsyncBelfry):
            method = getattr(cls, name, None)
            assert method is not None, f"{cls.__name__}.{name} is missing"
            assert method.__wrapped__ is getattr(routes, name)
        assert inspect.iscoroutinefunction(getattr(belfry.AsyncBelfry, name))
