#!/usr/bin/env python3
"""A tiny DNS server over UDP for the tests: dns_responder.py ADDRESS DELAY_MS

Answers every query DELAY_MS after it arrives (each on its own timer, so queries that
arrive together are answered together):
  A     NAME.delay.test  ->  10.77.X.Y, where X.Y is taken from the digits in NAME (h12 -> 10.77.0.12)
  AAAA  NAME.delay.test  ->  no address (NOERROR, empty answer)
  anything else          ->  NXDOMAIN
Prints "ready" once listening on ADDRESS port 53, and runs until killed.
"""
import asyncio
import re
import struct
import sys

QTYPE_A, QTYPE_AAAA = 1, 28


def parse_question(packet):
    """(id, flags, qname, qtype, end of the question) of a query."""
    qid, flags = struct.unpack("!HH", packet[:4])
    labels, i = [], 12
    while packet[i] != 0:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, _qclass = struct.unpack("!HH", packet[i + 1:i + 5])
    return qid, flags, ".".join(labels).lower(), qtype, i + 5


def answer(packet):
    qid, flags, name, qtype, end = parse_question(packet)
    question = packet[12:end]
    rd = flags & 0x0100
    if not name.endswith(".delay.test"):
        header = struct.pack("!HHHHHH", qid, 0x8080 | rd | 3, 1, 0, 0, 0)   # NXDOMAIN
        return header + question
    records = b""
    count = 0
    if qtype == QTYPE_A:
        digits = re.sub(r"\D", "", name.split(".")[0]) or "0"
        n = int(digits) % 65536
        rdata = bytes([10, 77, n // 256, n % 256])
        records = struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, 60, 4) + rdata
        count = 1
    header = struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, count, 0, 0)
    return header + question + records


class Responder(asyncio.DatagramProtocol):
    def __init__(self, delay):
        self.delay = delay

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            reply = answer(data)
        except Exception:       # a malformed query gets no answer
            return
        asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)


async def main():
    address, delay_ms = sys.argv[1], int(sys.argv[2])
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Responder(delay_ms / 1000), local_addr=(address, 53))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
