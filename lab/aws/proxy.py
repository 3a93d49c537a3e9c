"""A reverse proxy in front of moto that injects AWS-shaped failures (throttling, 5xx).

moto cannot be told to fail, but a restore must be proven against a throttled API. boto3 talks to
this proxy (`AWS_ENDPOINT_URL`), which forwards to moto unless a fault rule matches the call's
`Action` (EC2, STS) or its method and path (Route53). Failures are rendered the way each AWS
protocol renders errors, so botocore raises the same `ClientError` codes as against AWS.
"""

from __future__ import annotations

import http.client
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from lab.emulator import ApiError, Emulator, Request, Response

_REQUEST_ID = "gameday-lab-injected"
_STS_ACTIONS = {"GetCallerIdentity", "AssumeRole", "GetSessionToken"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "server", "date"}


def aws_action(request: Request) -> str:
    """The API action of a call: `Action` of query protocols, else method and path."""
    if request.body and b"Action=" in request.body:
        values = parse_qs(request.body.decode(errors="replace")).get("Action")
        if values:
            return values[0]
    action = request.arg("Action")
    return action or f"{request.method} {request.path}"


class AwsFaultProxy(Emulator):
    name = "aws-proxy"

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80

    def fault_key(self, request: Request) -> str:
        return aws_action(request)

    def error_body(self, error: ApiError) -> bytes:
        return self._query_error(error, ec2=True)

    def injected_body(self, error: ApiError, request: Request) -> bytes:
        """EC2 answers `<Response><Errors>`; other query APIs (STS) and REST-XML APIs (Route53)
        answer `<ErrorResponse>`, which is what botocore parses for each."""
        action = aws_action(request)
        if " " in action:
            return self._rest_error(error)
        return self._query_error(error, ec2=action[:1].isupper() and action not in _STS_ACTIONS)

    @staticmethod
    def _query_error(error: ApiError, ec2: bool) -> bytes:
        code, message = escape(error.code), escape(error.message)
        if ec2:
            return (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                    f"</Error></Errors><RequestID>{_REQUEST_ID}</RequestID></Response>").encode()
        return AwsFaultProxy._rest_error(error)

    @staticmethod
    def _rest_error(error: ApiError) -> bytes:
        kind = "Receiver" if error.status >= 500 else "Sender"
        return (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>"
                f"<Message>{escape(error.message)}</Message></Error>"
                f"<RequestId>{_REQUEST_ID}</RequestId></ErrorResponse>").encode()

    def handle(self, request: Request) -> Response:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        path = request.path + (f"?{request.raw_query}" if request.raw_query else "")
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
        try:
            connection.request(request.method, path, body=request.body or None, headers=headers)
            upstream = connection.getresponse()
            body = upstream.read()
        finally:
            connection.close()
        kept = {k: v for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP}
        return Response(upstream.status, body, kept)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="AWS fault-injecting proxy in front of moto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="moto's URL, e.g. http://127.0.0.1:5000")
    options = parser.parse_args()
    proxy = AwsFaultProxy(options.upstream, options.host, options.port)
    proxy.start()
    print(proxy.url, flush=True)
    proxy.serve_forever()
