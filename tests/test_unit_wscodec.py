"""sandbox/wscodec.py, the sandbox's and the tests' own WebSocket codec, against RFC 6455's own examples
(section 5.7, and 1.3 for the accept value): it is the second reading of the RFC that the product's
codecs are checked with, so it is checked against the text itself."""
import io

import pytest

from sandbox import wscodec


def test_rfc_6455_examples_build_and_parse():
    hello = bytes.fromhex("810548656c6c6f")                           # unmasked text "Hello"
    masked = bytes.fromhex("818537fa213d7f9f4d5158")                   # masked text "Hello"
    fragments = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    ping = bytes.fromhex("890548656c6c6f")
    assert wscodec.frame(wscodec.OP_TEXT, b"Hello") == hello
    assert wscodec.frame(wscodec.OP_TEXT, b"Hello", mask_key=bytes.fromhex("37fa213d")) == masked
    assert wscodec.frame(wscodec.OP_TEXT, b"Hel", fin=False) + wscodec.frame(wscodec.OP_CONT, b"lo") == fragments
    assert wscodec.frame(wscodec.OP_PING, b"Hello") == ping
    assert wscodec.frame(wscodec.OP_BINARY, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert wscodec.frame(wscodec.OP_BINARY, bytes(65536))[:10] == bytes.fromhex("827f0000000000010000")
    frames, rest = wscodec.split_frames(hello + masked + fragments + ping + b"\x82")
    assert rest == b"\x82"
    assert [(f.opcode, f.payload, f.fin, f.masked) for f in frames] == [
        (1, b"Hello", True, False), (1, b"Hello", True, True), (1, b"Hel", False, False), (0, b"lo", True, False),
        (9, b"Hello", True, False)]


def test_handshake_values():
    assert wscodec.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert wscodec.valid_key(wscodec.new_key()) and not wscodec.valid_key("c2hvcnQ=") and not wscodec.valid_key(None)
    request = wscodec.upgrade_request("/p", "h:1", "dGhlIHNhbXBsZSBub25jZQ==", {"Authorization": "Basic x"})
    assert request.endswith(b"\r\nAuthorization: Basic x\r\n\r\n")
    assert wscodec.request_key(request) == "dGhlIHNhbXBsZSBub25jZQ=="
    answer = wscodec.answer_101("dGhlIHNhbXBsZSBub25jZQ==") + b"\x82\x00"
    head, rest = wscodec.recv_head(_reads(answer[:9], answer[9:]))      # in two reads
    assert rest == b"\x82\x00"
    status, headers = wscodec.parse_head(head)
    assert status == 101 and ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in headers
    assert wscodec.recv_head(_reads(b"HTTP/1.1 101")) == (None, b"HTTP/1.1 101")


def _reads(*chunks):
    """A recv(n) that hands out these chunks, then b"" (the end of the stream)."""
    left = iter(chunks)
    return lambda n: next(left, b"")


@pytest.mark.parametrize("data,masked,code", [
    (bytes.fromhex("c20161"), None, 1002),                 # RSV1
    (bytes.fromhex("830161"), None, 1002),                 # opcode 3
    (bytes.fromhex("820161"), True, 1002),                 # a server's frame where a client's is due
    (bytes.fromhex("82810102030460"), False, 1002),        # a client's frame where a server's is due
    (bytes.fromhex("097e012c"), None, 1002),               # a fragmented ping of 300 bytes
    (bytes.fromhex("827f0000000000200001"), None, 1009),   # over max_payload
])
def test_what_the_rfc_forbids_raises_with_its_close_code(data, masked, code):
    with pytest.raises(wscodec.ProtocolError) as info:
        wscodec.read_frame(io.BytesIO(data + bytes(8)).read, masked, max_payload=1 << 20)
    assert info.value.code == code
